"""How fast `mgc` answers: wall time of `mgc --help`, `mgc presets` and `mgc validate` on a small manifest, beside
Python's own start-up (`python -c pass`) and `python -c "import torch"`, all timed in the same run.

Each command runs in a fresh process as the `mgc` entry point runs it (`python -m mgc_lightning.cli ...`), from a
neutral folder, with the package found on PYTHONPATH at `--checkout` (default: this checkout; give an older one to
time it on the same machine in the same conditions). After one untimed warm-up, the median of `--repeats` runs is
printed with its ratios to the two references. The manifest is a small synthetic benchmark (48 windows of 6
recordings, real FLAC files) written to a temporary folder. The load average before and after says whether the
machine was busy.

    python benchmarks/cli_startup.py [--repeats 7] [--checkout PATH]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mgc_lightning.synth.build import build_benchmark
from mgc_lightning.synth.config import BENCHMARK_PRESETS, sized

REPOSITORY = Path(__file__).resolve().parent.parent


def median_seconds(command: list[str], repeats: int, folder: Path, env: dict[str, str]) -> float:
    """Median wall time of a command run `repeats` times after one warm-up; it must succeed."""
    times = []
    for run in range(repeats + 1):
        started = time.perf_counter()
        subprocess.run(command, cwd=folder, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if run:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each command")
    parser.add_argument("--checkout", type=Path, default=REPOSITORY, help="repository whose mgc_lightning is timed")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(args.checkout.resolve())}
    with tempfile.TemporaryDirectory(prefix="cli-startup-") as temporary:
        folder = Path(temporary)
        manifest = build_benchmark(folder / "bench", sized(BENCHMARK_PRESETS["demo"], 48, 8), seed=0, progress=False)
        mgc = [sys.executable, "-m", "mgc_lightning.cli"]
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            'python -c "import torch"': [sys.executable, "-c", "import torch"],
            "mgc --help": [*mgc, "--help"],
            "mgc presets": [*mgc, "presets"],
            "mgc validate (48 windows)": [*mgc, "validate", str(manifest)],
        }
        load_before = os.getloadavg()[0]
        seconds = {name: median_seconds(command, args.repeats, folder, env) for name, command in commands.items()}
        load_after = os.getloadavg()[0]
    python, torch = seconds["python -c pass"], seconds['python -c "import torch"']
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, checkout {args.checkout}; "
          f"median of {args.repeats} runs; 1-minute load average {load_before:.2f} before, {load_after:.2f} after")
    print(f"{'command':<28} {'median s':>9} {'x python':>9} {'x import torch':>15}")
    for name, value in seconds.items():
        print(f"{name:<28} {value:>9.3f} {value / python:>9.1f} {value / torch:>15.2f}")


if __name__ == "__main__":
    main()
