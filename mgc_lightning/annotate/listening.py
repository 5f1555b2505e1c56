"""The app's loopback socket, apart from app.py (fastapi) so that `mgc annotate` binds it before anything slow."""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def listen_on_loopback(port: int) -> socket.socket:
    """A socket listening on 127.0.0.1:`port` (0 picks a free port); RuntimeError when it cannot."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((LOOPBACK, port))
        listener.listen()
    except OSError as error:
        listener.close()
        raise RuntimeError(f"cannot listen on {LOOPBACK}:{port} ({error.strerror}); choose another --port") from None
    return listener


def page_address(listener: socket.socket) -> str:
    return f"http://{LOOPBACK}:{listener.getsockname()[1]}/"
