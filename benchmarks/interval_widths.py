"""How much wider a recording-level interval is than a window-level one on a finished experiment's tests: the
windows of one recording share its noise and call bouts, so resampling windows as if independent understates the
uncertainty (BENCHMARKS.md, "Which windows, and what the brackets cover").

    .venv/bin/python benchmarks/interval_widths.py --experiment demo   # after `make demo`, from the repository root
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mgc_lightning.evaluate.intervals import bootstrap_interval
from mgc_lightning.report.comparison import select_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="demo")
    args = parser.parse_args()
    ratios = []
    print("| dataset | model (seed) | front end | windows | recordings | window-level | recording-level | ratio |")
    print("|---|---|---|---:|---:|---|---|---:|")
    for run in select_runs(args.experiment).runs:
        for preset, results in sorted(run.windows.items()):
            recordings = [key[0] for key in results.keys]
            by_window = bootstrap_interval(results.correct)
            by_recording = bootstrap_interval(results.correct, groups=recordings)
            ratio = (by_recording.high - by_recording.low) / (by_window.high - by_window.low)
            ratios.append(ratio)
            print(f"| {Path(run.dataset).parent.name} | {run.model} ({run.seed}) | {preset} | {len(recordings)} | "
                  f"{len(set(recordings))} | {by_window} | {by_recording} | {ratio:.2f} |")
    if ratios:
        print(f"\nrecording-level / window-level width: median {np.median(ratios):.2f}, "
              f"range {min(ratios):.2f}-{max(ratios):.2f} over {len(ratios)} tests")


if __name__ == "__main__":
    main()
