"""A Python whose heavy imports are already done: each command runs in a fresh fork of one process that imported
torch, Lightning, timm, MLflow and the rest once, so a test that starts many `mgc` processes pays 5-7 s of imports
once instead of once per process.

`python preloaded_python.py serve SOCKET` imports the libraries and then forks a watcher per request (several at a
time), which forks the command's process; `python preloaded_python.py SOCKET -m MODULE ARGS...` or `... SOCKET SCRIPT
ARGS...` (the client; it imports nothing heavy) sends its command line, working folder, environment (PYTHONPATH goes
onto the module search path) and standard streams, passes SIGINT and SIGTERM on, and exits with the command's status
or dies by the signal that ended it, as `python -m MODULE ARGS` or `python SCRIPT ARGS` would. A client started as the
leader of a process group (Popen's process_group=0) gets the command's process into its group, so SIGKILL sent to the
group (conftest.kill_group) ends the command itself; a client that dies otherwise takes its command with it.

The package's own modules are not preloaded: each command imports them itself, from its PYTHONPATH first. What a fork
does not reproduce: a library's import-time reading of the environment (the server imports with one torch thread and
the hub offline, as the suite runs; Lightning reads a rank from RANK or LOCAL_RANK, which no command started here
carries: Lightning starts a run's further processes itself, as fresh processes), warnings the libraries raise while
they are imported (they go to the server's stderr), what forks share (the string hash seed, NumPy's global random
state), and the interpreter's teardown of its modules. Tests about start-up itself, and the second node of the
multi-node test, start real processes."""

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
    """In the fork: become the command's process (process group, folder, environment, module search path, command
    line), run it as the interpreter would, and end as it would (non-daemon threads joined, atexit handlers run,
    streams flushed; an uncaught error through sys.excepthook and status 1, an uncaught KeyboardInterrupt by SIGINT),
    without tearing the preloaded modules down one by one, which takes seconds."""
    import atexit
    import runpy
    import signal
    import threading

    status, by_signal = 1, None
    try:
        if request["group"] is not None:  # a client that leads a process group: killing the group kills the command
            os.setpgid(0, request["group"])
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path[1:1] = [entry for entry in request["env"].get("PYTHONPATH", "").split(os.pathsep) if entry]
        if request["module"]:
            sys.argv, sys.path[0] = ["-m", *request["argv"]], request["cwd"]  # what `python -m` puts first
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        else:
            sys.argv, sys.path[0] = ["", *request["argv"]], os.path.dirname(os.path.abspath(request["script"]))
            runpy.run_path(request["script"], run_name="__main__")  # sets sys.argv[0] to the script as given
        status = 0
    except SystemExit as ended:  # as the interpreter reads it: None is 0, a message is printed with status 1
        status = 0 if ended.code is None else ended.code
        if not isinstance(status, int):
            print(status, file=sys.stderr)
            status = 1
    except KeyboardInterrupt:
        sys.excepthook(*sys.exc_info())
        by_signal = signal.SIGINT
    except BaseException:
        sys.excepthook(*sys.exc_info())
    finally:
        try:
            threading._shutdown()
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            if by_signal is not None:
                signal.signal(by_signal, signal.SIG_DFL)
                os.kill(os.getpid(), by_signal)
            os._exit(status)


def _watch(connection: socket.socket) -> None:
    """In a fork of the server, one per request: start the command's process, tell the client its pid, wait for it
    (or for the client to vanish: a client killed by SIGKILL takes its command with it) and send its exit status
    (negative: the signal that ended it)."""
    import select
    import signal

    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the server reaps its watchers; a watcher waits for its command
        message, fds, _, _ = socket.recv_fds(connection, 1 << 20, STREAMS)
        pid = os.fork()
        if pid == 0:
            connection.close()
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
                os.close(fd)
            _run_command(json.loads(message))
        for fd in fds:
            os.close(fd)
        connection.sendall(struct.pack("i", pid))
        command = os.pidfd_open(pid)
        watched = select.poll()
        watched.register(command, select.POLLIN)
        watched.register(connection, select.POLLIN)  # the client sends nothing more: readable means it hung up
        if all(fd != command for fd, _ in watched.poll()):
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        connection.sendall(struct.pack("i", os.waitstatus_to_exitcode(status)))
    except OSError:
        pass  # the client is gone: nobody to tell
    finally:
        os._exit(0)


def serve(path: str) -> None:
    """Import the libraries, then listen on `path` and hand each request to a watcher of its own."""
    import importlib
    import signal
    import threading

    for name in PRELOADED:
        importlib.import_module(name)
    # a fork copies only the thread that forks: the libraries must not have started any of their own
    assert threading.active_count() == 1, threading.enumerate()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # finished watchers are reaped by the system
    server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server.bind(path)
    server.listen(16)
    print("ready", flush=True)
    while True:
        connection, _ = server.accept()
        if os.fork() == 0:
            server.close()
            _watch(connection)
        connection.close()


def request(path: str, command: list[str]) -> int:
    """The client: `-m MODULE ARGS` or `SCRIPT ARGS` through the server; exits with the command's status, or dies by
    the signal that ended the command, as its parent would see a fresh process. SIGINT and SIGTERM sent to the client
    go to the command's process."""
    import signal

    module, script, argv = (command[1], None, command[2:]) if command[0] == "-m" else (None, command[0], command[1:])
    group = os.getpid() if os.getpgid(0) == os.getpid() else None
    message = json.dumps({"module": module, "script": script, "argv": argv, "cwd": os.getcwd(),
                          "env": dict(os.environ), "group": group}).encode()
    forwarded = (signal.SIGINT, signal.SIGTERM)
    signal.pthread_sigmask(signal.SIG_BLOCK, forwarded)  # held until the command's process is known
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as connection:
        connection.connect(path)
        socket.send_fds(connection, [message], list(range(STREAMS)))
        pid = _received_number(connection, path)
        for signum in forwarded:
            signal.signal(signum, lambda signum, frame: os.kill(pid, signum))
        signal.pthread_sigmask(signal.SIG_UNBLOCK, forwarded)
        status = _received_number(connection, path)
    if status < 0:
        if -status != signal.SIGKILL:
            signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    return status


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
