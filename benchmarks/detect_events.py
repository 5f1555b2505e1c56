"""Event-level precision and recall of `mgc detect` on a synthetic benchmark's test recordings.

    mgc detect data/bench-demo/audio --model model.mgc --out detections/
    python benchmarks/detect_events.py --benchmark data/bench-demo --detections detections/
"""

from __future__ import annotations

import argparse

from mgc_lightning.audio.manifest import SplitConfig, load_manifest, split_rows
from mgc_lightning.evaluate.event_scores import event_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", required=True, help="folder of `mgc synth` (manifest.csv, events.csv, audio/)")
    parser.add_argument("--detections", required=True, help="--out folder of `mgc detect`")
    parser.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    args = parser.parse_args()
    rows = load_manifest(f"{args.benchmark}/manifest.csv", check_audio=False)
    if args.split != "all":  # the split every classifier uses by default (SplitConfig's)
        rows = [rows[i] for i in split_rows(rows, SplitConfig())[args.split]]
    recordings = sorted({row.recording for row in rows})
    for sound_type, score in event_scores(args.detections, args.benchmark, recordings).items():
        show = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"{sound_type:<15} recall {show(score['recall'])} ({score['detected']}/{score['events']} events), "
              f"precision {show(score['precision'])} ({score['true_selections']}/{score['selections']} selections)")


if __name__ == "__main__":
    main()
