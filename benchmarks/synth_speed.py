"""Build speed and memory of the synthetic benchmark generator.

Prints wall time, real-time factor (seconds of audio rendered per second) and the parallel speed-up of 2 workers
over 1 on the same dataset, plus the peak memory of a worker, and projects the time of a full `paper` build.

    python benchmarks/synth_speed.py [--paper-windows 200]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from mgc_lightning.synth.build import build_benchmark
from mgc_lightning.synth.config import BENCHMARK_PRESETS


def timed_build(config, workers: int) -> float:
    folder = Path(tempfile.mkdtemp(prefix="synth-speed-"))
    try:
        started = time.perf_counter()
        build_benchmark(folder, config, seed=0, workers=workers, progress=False)
        return time.perf_counter() - started
    finally:
        shutil.rmtree(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paper-windows", type=int, default=200, help="windows of the paper preset to time")
    args = parser.parse_args()
    demo = BENCHMARK_PRESETS["demo"]
    audio_s = demo.n_windows * demo.window_s
    one, two = timed_build(demo, 1), timed_build(demo, 2)
    print(f"demo ({demo.n_windows} windows, {audio_s:.0f} s of 384 kHz audio): 1 worker {one:.1f} s, "
          f"2 workers {two:.1f} s, speed-up x{one / two:.2f}, real-time factor x{audio_s / two:.1f} with 2 workers")
    paper = replace(BENCHMARK_PRESETS["paper"], n_windows=args.paper_windows)
    seconds = timed_build(paper, 2)
    full = BENCHMARK_PRESETS["paper"].n_windows
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"paper preset, {args.paper_windows} windows with 2 workers: {seconds:.1f} s "
          f"({args.paper_windows / seconds:.1f} windows/s); full {full} windows projected at "
          f"{full / (args.paper_windows / seconds) / 60:.0f} min; peak worker memory {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
