"""Build speed and memory of the synthetic benchmark generator.

Prints wall time, real-time factor (seconds of audio rendered per second) and the parallel speed-up of 2 workers
over 1 on the same dataset, plus the peak memory of a worker, and projects the time of a full `paper` build.

    python benchmarks/synth_speed.py [--paper-windows 200]
    python benchmarks/synth_speed.py --compare demo demo-real  # one worker each, wall and CPU time side by side
"""

from __future__ import annotations

import argparse
import csv
import resource
import statistics
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from mgc_lightning.synth.build import build_benchmark
from mgc_lightning.synth.config import BENCHMARK_PRESETS


def timed_build(config, workers: int, inspect=None) -> float:
    """Seconds to build `config` (seed 0) into a temporary folder; `inspect(folder)` runs on the result before the
    folder is removed."""
    folder = Path(tempfile.mkdtemp(prefix="synth-speed-"))
    try:
        started = time.perf_counter()
        build_benchmark(folder, config, seed=0, workers=workers, progress=False)
        seconds = time.perf_counter() - started
        if inspect is not None:
            inspect(folder)
        return seconds
    finally:
        shutil.rmtree(folder)


def labelled_share(folder: Path) -> list[str]:
    """Per sound type: how many calls the benchmark drew, the share labelled (detectable) and their median effective
    SNR (against the background with vessels and pings), from its events.csv."""
    with open(folder / "events.csv") as handle:
        events = list(csv.DictReader(handle))
    lines = []
    for sound_type in ("whistle", "beluga_click", "porpoise_click"):
        rows = [e for e in events if e["sound_type"] == sound_type]
        labelled = sum(e["labelled"] in ("True", "true", "1") for e in rows) / max(len(rows), 1)
        snr = statistics.median(float(e["effective_snr_db"]) for e in rows) if rows else float("nan")
        lines.append(f"  {sound_type}: {len(rows)} calls, {labelled:.0%} labelled, median effective SNR {snr:.1f} dB")
    return lines


def compare(presets: list[str]) -> None:
    """Each preset built by one worker in this process, in turn: wall time and this process's CPU time (the CPU
    time compares presets on a machine that other jobs share), and how many of its calls are labelled."""
    for name in presets:
        config = BENCHMARK_PRESETS[name]
        cpu = time.process_time()
        shares: list[list[str]] = []
        wall = timed_build(config, 1, lambda folder: shares.append(labelled_share(folder)))
        cpu = time.process_time() - cpu
        audio_s = config.n_windows * config.window_s
        print(f"{name} (sound model {config.sound_model}, {config.n_windows} windows, {audio_s:.0f} s of audio): "
              f"1 worker {wall:.1f} s wall, {cpu:.1f} s CPU, {audio_s / cpu:.1f}x real time per CPU second")
        print("\n".join(shares[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paper-windows", type=int, default=200, help="windows of the paper preset to time")
    parser.add_argument("--compare", nargs="+", choices=sorted(BENCHMARK_PRESETS),
                        help="only time these presets one after the other with one worker each")
    args = parser.parse_args()
    if args.compare:
        compare(args.compare)
        return
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
