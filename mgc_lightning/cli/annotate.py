"""mgc annotate: the browser app that refines masks by hand."""

from __future__ import annotations

import argparse
import os

from .options import cache_options, split_config, split_options


def _cmd_annotate(args: argparse.Namespace) -> int:
    from ..annotate.listening import listen_on_loopback, page_address
    from ..annotate.locks import held_by_this_server, server_lock_path
    from ..audio.manifest import load_manifest
    from ..frontend.config import get_preset

    rows, config = load_manifest(args.manifest), get_preset(args.preset)
    listener = listen_on_loopback(args.port)
    with listener, held_by_this_server(server_lock_path(args.manifest, config), page_address(listener),
                                       args.annotator.strip()):
        _build_and_serve(args, rows, config, listener)
    return 0


def _build_and_serve(args: argparse.Namespace, rows, config, listener) -> None:
    """The slow part (torch, the queue's spectrograms), once the port and the dataset's server lock are held: a busy
    port, a second server or a read-only folder was refused at once."""
    from ..annotate.app import serve
    from ..annotate.queues import build_queue
    from ..annotate.session import AnnotationSession, accepted_keys
    from ..models.segmenter import load_segmenter

    segmenter = load_segmenter(args.segmenter) if args.segmenter else None
    queue = build_queue(rows, args.queue, split_config(args), config, args.cache_root, args.count, args.seed,
                        segmenter, accepted=accepted_keys(args.manifest, config), manifest=args.manifest)
    session = AnnotationSession(args.manifest, queue, config, args.cache_root, args.annotator, args.queue, segmenter)
    serve(session, listener, announce=lambda line: print(line, flush=True))


def register(commands: argparse._SubParsersAction) -> None:
    """annotate: the browser app that refines masks by hand."""
    sub = commands.add_parser("annotate", help="refine masks in the browser (a local web app on 127.0.0.1)")
    sub.add_argument("manifest")
    sub.add_argument("--preset", default="origin")
    sub.add_argument("--queue", default="hq", choices=["hq", "uncertain", "all"],
                     help="hq: the stratified high-quality selection; uncertain: the windows the segmenter is least "
                          "sure about first (needs --segmenter); all: every window (train side only, as the others)")
    sub.add_argument("--count", type=int, default=200, help="windows in the hq and uncertain queues")
    sub.add_argument("--segmenter", help="segmenter checkpoint: its masks are the starting point, and it ranks the "
                                         "uncertain queue")
    sub.add_argument("--annotator", default=os.environ.get("USER") or "annotator",
                     help="name recorded with each accepted mask (default: $USER)")
    sub.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free port)")
    split_options(sub, seed_help="seed of the split and of the hq selection")
    cache_options(sub, quiet=False)
    sub.set_defaults(run=_cmd_annotate)
