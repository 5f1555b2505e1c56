"""mgc annotate: the browser app that refines masks by hand."""

from __future__ import annotations

import argparse
import os

from .options import cache_options, split_config, split_options


def _cmd_annotate(args: argparse.Namespace) -> int:
    from ..annotate.app import serve
    from ..annotate.queues import build_queue
    from ..annotate.session import AnnotationSession, accepted_keys
    from ..audio.manifest import load_manifest
    from ..frontend.config import get_preset
    from ..models.segmenter import load_segmenter

    rows, config = load_manifest(args.manifest), get_preset(args.preset)
    segmenter = load_segmenter(args.segmenter) if args.segmenter else None
    queue = build_queue(rows, args.queue, split_config(args), config, args.cache_root, args.count, args.seed,
                        segmenter, accepted=accepted_keys(args.manifest, config), manifest=args.manifest)
    session = AnnotationSession(args.manifest, queue, config, args.cache_root, args.annotator, args.queue, segmenter)
    serve(session, args.port, announce=lambda line: print(line, flush=True))
    return 0


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
