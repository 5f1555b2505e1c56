"""Largest resident memory of `mgc detect` over one recording of 1, 6 and 24 hours. Each batch's rows are written as
they are predicted, so it should not grow with the recording's length: the goal is the largest within 10 % of the
smallest. Nothing is asserted; the ratio is printed.

Each recording is noise, written to a temporary WAV an hour at a time. Each `mgc detect` runs in a fresh process as
the entry point runs it (`python -m mgc_lightning.cli detect`, from the temporary folder, so that the package is the
one on PYTHONPATH at `--checkout`: default this checkout, give an older one to compare), and its peak RSS is the
kernel's count for that one process (os.wait4; RUSAGE_CHILDREN would give the largest of all the runs so far).

The model is built here, untrained, small enough that a day of audio takes minutes on 2 CPU cores: a 2 kHz front end
(band 50-1000 Hz, 16 x 16 images) and the tests' narrow ResNet-18, on the demo's 0.25 s windows (345,600 windows a
day). What grows with a recording is its windows' rows and Raven selections, which this model makes as many of as
any other (its probabilities sit near 0.5, so its tables hold many selections); the networks' activations depend on
the batch, not the recording.

    python benchmarks/detect_memory.py [--hours 1 6 24] [--batch-size 256] [--checkout PATH]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from mgc_lightning.deploy.bundle import Bundle, save_bundle, self_contained
from mgc_lightning.frontend.config import SpectrogramConfig
from mgc_lightning.models.classifier import ClassifierModule

REPOSITORY = Path(__file__).resolve().parent.parent
RATE = 2_000
WINDOW_S = 0.25


def small_bundle(path: Path) -> Path:
    torch.manual_seed(0)
    classifier = ClassifierModule(backbone_kwargs={"channels": [8, 16, 32, 64], "stem_width": 8}, dim=32)
    front_end = SpectrogramConfig(name="memory-benchmark", sample_rate=RATE, n_fft=128, hop_length=32, fmin=50.0,
                                  fmax=RATE / 2, height=16, width=16)
    save_bundle(Bundle(front_end=front_end, window_s=WINDOW_S, classifier=self_contained(classifier.hparams),
                       classifier_state=classifier.state_dict()), path)
    return path


def write_recording(path: Path, hours: float) -> Path:
    """Noise, written an hour at a time (never the whole recording in memory)."""
    rng = np.random.default_rng(0)
    total = int(hours * 3600 * RATE)
    with sf.SoundFile(str(path), "w", samplerate=RATE, channels=1, subtype="PCM_16") as handle:
        for first in range(0, total, 3600 * RATE):
            handle.write((0.05 * rng.standard_normal(min(3600 * RATE, total - first))).astype(np.float32))
    return path


def peak_rss_mib(command: list[str], folder: Path, env: dict[str, str]) -> tuple[float, float]:
    """The command's largest resident memory (MiB) and wall time (s), run in `folder`; it must succeed."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{process.stderr.read().decode()}")
    return usage.ru_maxrss / 1024, time.perf_counter() - started  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, nargs="+", default=[1, 6, 24])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--checkout", type=Path, default=REPOSITORY, help="repository whose mgc_lightning is measured")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(args.checkout.resolve())}
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
          f"; {args.checkout.resolve()}")
    peaks = {}
    with tempfile.TemporaryDirectory(prefix="detect-memory-") as temporary:
        folder = Path(temporary)
        model = small_bundle(folder / "model.mgc")
        for hours in args.hours:
            audio = write_recording(folder / f"recording_{hours:g}h.wav", hours)
            command = [sys.executable, "-m", "mgc_lightning.cli", "detect", str(audio), "--model", str(model), "--out",
                       str(folder / f"out_{hours:g}h"), "--batch-size", str(args.batch_size), "--quiet"]
            peaks[hours], seconds = peak_rss_mib(command, folder, env)
            print(f"{hours:g} h ({hours * 3600 / WINDOW_S:,.0f} windows): largest resident memory {peaks[hours]:,.0f} "
                  f"MiB, {seconds:.0f} s", flush=True)
            audio.unlink()
    print(f"largest / smallest: {max(peaks.values()) / min(peaks.values()):.3f} (goal: within 1.10); load average "
          f"{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
