"""`mgc` commands run in fresh forks of one process that has imported the heavy libraries once (torch, Lightning,
timm, MLflow, ...): a walkthrough of many commands pays 5-7 s of imports once instead of once per command.

`python preloaded_mgc.py serve SOCKET` imports the libraries, then forks once per request; `python preloaded_mgc.py
SOCKET ARGS...` (the `mgc` a test puts on a page's path; it imports nothing heavy) sends its arguments, working folder,
environment and standard streams, and exits with the command's status, as `python -m mgc_lightning.cli ARGS` would.
The package's own modules are not preloaded: each command imports them itself, as in a fresh process, so an import
that a command forgets still fails. What a fork cannot show is whether a library behaves differently when imported
under the command's environment; tests that are about processes (signals, DDP, start-up) start real ones."""

from __future__ import annotations

import json
import os
import socket
import struct
import sys

PRELOADED = ("torch", "torchvision", "lightning.pytorch", "timm", "segmentation_models_pytorch", "mlflow",
             "matplotlib.pyplot", "scipy.signal", "jsonargparse", "soundfile")
STREAMS = 3  # stdin, stdout, stderr


def _run_command(request: dict) -> None:
    """In the fork: become the command's process (folder, environment, arguments), run `mgc` as `python -m` does,
    and exit as the interpreter would (atexit handlers, flushed streams; an uncaught error's traceback, status 1),
    without tearing down the preloaded modules one by one, which takes seconds."""
    import atexit
    import runpy
    import traceback

    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = ["mgc", *request["argv"]]
    sys.path[0] = request["cwd"]  # what `python -m` puts first
    try:
        runpy.run_module("mgc_lightning.cli", run_name="__main__", alter_sys=True)
        status = 0
    except SystemExit as exit:  # as the interpreter reads it: None is 0, a message is printed with status 1
        status = 0 if exit.code is None else exit.code
        if not isinstance(status, int):
            print(status, file=sys.stderr)
            status = 1
    except BaseException:
        traceback.print_exc()
        status = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def serve(path: str) -> None:
    import importlib
    import threading

    for name in PRELOADED:
        importlib.import_module(name)
    # a fork copies only the thread that forks: the libraries must not have started any of their own
    assert threading.active_count() == 1, threading.enumerate()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server.bind(path)
    server.listen()
    print("ready", flush=True)
    while True:
        connection, _ = server.accept()
        message, fds, _, _ = socket.recv_fds(connection, 1 << 20, STREAMS)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            server.close()
            connection.close()
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
                os.close(fd)
            _run_command(json.loads(message))
        for fd in fds:
            os.close(fd)
        connection.sendall(struct.pack("i", pid))
        _, status = os.waitpid(pid, 0)
        connection.sendall(struct.pack("i", os.waitstatus_to_exitcode(status)))
        connection.close()


def request(path: str, argv: list[str]) -> int:
    """The client: one command through the server; its exit status (128 + N for a process ended by signal N).
    SIGINT and SIGTERM sent to the client go to the command's process, as they would reach `mgc` itself."""
    import signal

    request = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
    forwarded = (signal.SIGINT, signal.SIGTERM)
    signal.pthread_sigmask(signal.SIG_BLOCK, forwarded)  # held until the command's process is known
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as connection:
        connection.connect(path)
        socket.send_fds(connection, [request], list(range(STREAMS)))
        pid = _received_number(connection, path)
        for signum in forwarded:
            signal.signal(signum, lambda signum, frame: os.kill(pid, signum))
        signal.pthread_sigmask(signal.SIG_UNBLOCK, forwarded)
        status = _received_number(connection, path)
    return 128 - status if status < 0 else status


def _received_number(connection: socket.socket, path: str) -> int:
    reply = connection.recv(4)
    if len(reply) != 4:
        sys.exit(f"{__file__}: the server at {path} ended without running the command")
    return struct.unpack("i", reply)[0]


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        sys.exit(request(sys.argv[1], sys.argv[2:]))
