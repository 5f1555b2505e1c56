"""The annotation web app: a small JSON API over an AnnotationSession and one static page (static/), served on the
loopback interface only.

The API names windows by their position in the queue, never by a path, so no request can point a read or a write at a
file of its choosing; static files come from the package's own folder; requests must be addressed to 127.0.0.1 or
localhost. A save names the version it edited (409 when the window was saved since); a file the server may not write
is a JSON message, never a traceback; one server at a time annotates a dataset with a preset (locks.py).
"""

from __future__ import annotations

import errno
import io
import socket
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware
from pydantic import BaseModel

from ..core.labels import SOUND_TYPES
from .listening import LOOPBACK, page_address
from .session import DEFAULT_SENSITIVITY, MAX_SLOWDOWN, AnnotationSession, VersionConflict

STATIC = Path(__file__).with_name("static")


class AcceptRequest(BaseModel):
    mask: str  # height * width characters '0' / '1', row 0 first (the highest frequency)
    labels: list[int]
    base_version: int  # the saved version the edits started from (0: never saved)


def mask_to_text(mask: np.ndarray) -> str:
    return "".join("1" if v else "0" for v in np.asarray(mask, dtype=bool).ravel())


def text_to_mask(text: str, height: int, width: int) -> np.ndarray:
    if len(text) != height * width or set(text) - {"0", "1"}:
        raise ValueError(f"mask must be {height * width} characters of 0 and 1")
    return (np.frombuffer(text.encode(), dtype=np.uint8) == ord("1")).reshape(height, width)


@lru_cache(maxsize=1)
def _colour_table() -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps["magma"](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def spectrogram_png(image: np.ndarray) -> bytes:
    """The [0, 1] image through the magma colour map, one PNG pixel per image pixel (the page scales it)."""
    from PIL import Image

    levels = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(_colour_table()[levels], mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def create_app(session: AnnotationSession) -> FastAPI:
    app = FastAPI(title="mgc annotate", docs_url=None, redoc_url=None, openapi_url=None)
    # Only requests addressed to this machine by name: a web page that rebinds its own domain to 127.0.0.1 gets 400.
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=[LOOPBACK, "localhost"])
    _error_handlers(app)
    _session_routes(app, session)
    _window_routes(app, session)
    _accept_route(app, session)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _error_handlers(app: FastAPI) -> None:
    """Every error the page can act on as a JSON message, never a traceback."""

    @app.exception_handler(ValueError)
    def unusable_window(request: Request, error: ValueError) -> JSONResponse:
        """A window whose audio cannot be read: the page shows the one-line reason (file and problem)."""
        return JSONResponse({"detail": str(error)}, status_code=422)

    @app.exception_handler(VersionConflict)
    def saved_since(request: Request, error: VersionConflict) -> JSONResponse:
        """The page offers to reload the saved version or to overwrite it (a save based on `version`)."""
        current = error.current
        return JSONResponse({"detail": str(error), "version": current.version if current else 0}, status_code=409)

    @app.exception_handler(OSError)
    def cannot_write(request: Request, error: OSError) -> JSONResponse:
        """A read-only folder or a full disk: the page shows which file and why, and keeps the edits."""
        refused = isinstance(error, PermissionError) or error.errno == errno.EROFS
        return JSONResponse({"detail": f"{error.filename}: {error.strerror}" if error.filename else str(error)},
                            status_code=403 if refused else 500)


def _window(session: AnnotationSession, index: int):
    """The queue's window at `index`; 404 past the queue's end."""
    try:
        return session.row(index)
    except IndexError as error:
        raise HTTPException(404, str(error)) from None


def _session_routes(app: FastAPI, session: AnnotationSession) -> None:
    """The page, and what it needs to know of the session before it shows a window."""
    config = session.config

    @app.get("/")
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/session")
    def describe() -> dict:
        return {
            "manifest": session.manifest.name, "record": str(session.record), "preset": config.name,
            "queue": session.queue_name, "total": len(session.queue), "accepted": session.accepted_count(),
            "resume": session.resume_index(), "annotator": session.annotator, "height": config.height,
            "width": config.width, "row_frequencies_khz": (config.row_frequencies_hz() / 1000).round(3).tolist(),
            "sound_types": list(SOUND_TYPES), "sensitivity": DEFAULT_SENSITIVITY, "max_slowdown": MAX_SLOWDOWN,
        }


def _window_routes(app: FastAPI, session: AnnotationSession) -> None:
    """One window as the page shows it: its record and starting mask, image, candidate mask and slowed audio."""

    @app.get("/api/windows/{index}")
    def show(index: int) -> dict:
        row = _window(session, index)
        accepted = session.saved(index)
        mask, origin = session.starting_mask(index)
        return {
            "index": index, "key": row.key, "recording": row.recording, "file": row.path.name, "start_s": row.start_s,
            "duration_s": row.duration_s, "labels": list(session.labels(index)), "mask": mask_to_text(mask),
            "mask_origin": origin, "sensitivity": DEFAULT_SENSITIVITY if origin == "candidate" else None,
            "version": accepted.version if accepted else 0, "accepted_by": accepted.annotator if accepted else None,
            "accepted_at": accepted.annotated_at if accepted else None,
        }

    @app.get("/api/windows/{index}/spectrogram.png")
    def spectrogram(index: int) -> Response:
        _window(session, index)
        return Response(spectrogram_png(session.image(index)), media_type="image/png")

    @app.get("/api/windows/{index}/candidate")
    def candidate(index: int, sensitivity: float = Query(DEFAULT_SENSITIVITY, ge=0, le=1)) -> dict:
        _window(session, index)
        return {"mask": mask_to_text(session.candidate(index, sensitivity))}

    @app.get("/api/windows/{index}/audio.wav")
    def audio(index: int, slowdown: int = Query(10, ge=1, le=MAX_SLOWDOWN)) -> Response:
        _window(session, index)
        return Response(session.playback_wav(index, slowdown), media_type="audio/wav")


def _accept_route(app: FastAPI, session: AnnotationSession) -> None:
    """A mask and labels saved, on the version they were edited from (409 when the window was saved since)."""
    config = session.config

    @app.post("/api/windows/{index}/accept")
    def accept(index: int, request: AcceptRequest) -> dict:
        _window(session, index)
        try:
            mask = text_to_mask(request.mask, config.height, config.width)
            saved = session.accept(index, mask, request.labels, request.base_version)
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        return {"accepted": session.accepted_count(), "total": len(session.queue), "version": saved.version}


def serve(session: AnnotationSession, listener: socket.socket, announce: Callable[[str], None] = print) -> None:
    """Serve the app on `listener` (listening.listen_on_loopback) until interrupted. The caller binds it and takes the
    dataset's server lock before it builds the session, so that a busy port, a second server or a read-only folder is
    refused at once; `announce` gets the address, so the page can be opened at once."""
    import uvicorn

    announce(f"{session.queue_name} queue: {session.accepted_count()} / {len(session.queue)} accepted; masks go "
             f"to {session.mask_folder}, the record to {session.record}")
    announce(f"annotate at {page_address(listener)}  (Ctrl+C stops)")
    server = uvicorn.Server(uvicorn.Config(create_app(session), log_level="warning"))
    server.run(sockets=[listener])
