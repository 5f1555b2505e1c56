"""Speed of `mgc detect` in times real time at 384 kHz: the whole path (read, front end, segmenter, classifier,
write) and each stage, in one run, plus the largest resident memory for two recording lengths (flat memory: both the
same).

The models are the own-data recipe with untrained weights (speed does not depend on the weights): the U-Net of
experiments/seg_unet.yaml and the classifier of the configs given (by default classifier_base.yaml,
narrow_resnet18.yaml and mgc_xattn_soft.yaml, as docs/own_data.md trains it). The recording is noise with tones,
written to a temporary WAV.

    python benchmarks/detect_speed.py                       # 60 s of audio, batch 32, CPU
    python benchmarks/detect_speed.py --set backbone_kwargs=null   # the full-width ResNet-18 instead
    python benchmarks/detect_speed.py --seconds 600 --accelerator gpu --batch-size 128 --workers 4
    python benchmarks/detect_speed.py --memory 60 600       # largest RSS while detecting a 60 s and a 600 s file
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import yaml

from mgc_lightning.deploy.bundle import Bundle, save_bundle
from mgc_lightning.deploy.detect import DetectSettings, RecordingWindows, detect
from mgc_lightning.deploy.inference import BundlePipeline
from mgc_lightning.frontend.spectrogram import get_preset
from mgc_lightning.models.classifier import ClassifierModule
from mgc_lightning.models.segmenter import SegmenterModule

RATE = 384_000
EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
SEGMENTER_CONFIG = EXPERIMENTS / "seg_unet.yaml"
CLASSIFIER_CONFIGS = [EXPERIMENTS / name for name in ("classifier_base.yaml", "narrow_resnet18.yaml",
                                                      "mgc_xattn_soft.yaml")]


def model_arguments(configs: list[Path], overrides: list[str]) -> dict:
    """The classifier's init args as `mgc fit --config A --config B ...` merges them (later files win, key by key),
    then the KEY=VALUE overrides (VALUE read as YAML)."""
    arguments = {}
    for config in configs:
        arguments.update(((yaml.safe_load(config.read_text()) or {}).get("model") or {}).get("init_args") or {})
    for override in overrides:
        key, _, value = override.partition("=")
        arguments[key] = yaml.safe_load(value)
    return arguments


def recommended_bundle(window_s: float, classifier: dict) -> Bundle:
    torch.manual_seed(0)
    segmenter = yaml.safe_load(SEGMENTER_CONFIG.read_text())["model"]["init_args"]
    return Bundle(front_end=get_preset("origin"), window_s=window_s, classifier=classifier,
                  classifier_state=ClassifierModule(**classifier).state_dict(), segmenter=segmenter,
                  segmenter_state=SegmenterModule(**segmenter).state_dict(), mask_kind="soft")


def write_recording(path: Path, seconds: float) -> Path:
    """Noise with a few tones, written a minute at a time (never the whole recording in memory)."""
    rng = np.random.default_rng(0)
    with sf.SoundFile(str(path), "w", samplerate=RATE, channels=1, subtype="PCM_16") as handle:
        for first in range(0, int(seconds * RATE), 60 * RATE):
            count = min(60 * RATE, int(seconds * RATE) - first)
            t = (first + np.arange(count)) / RATE
            handle.write((0.01 * rng.standard_normal(count) + 0.05 * np.sin(2 * np.pi * 20_000 * t)).astype(np.float32))
    return path


def stage_times(bundle: Bundle, audio: Path, settings: DetectSettings, device: torch.device) -> dict[str, float]:
    """Seconds spent in each stage over the whole recording, stage by stage on the same batches, on `device`."""
    pipeline = BundlePipeline(bundle).to(device)
    totals = dict.fromkeys(("read", "front end", "segmenter", "classifier"), 0.0)
    windows = iter(RecordingWindows([audio], bundle, settings))

    def finished() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    with torch.no_grad():
        while True:
            began = time.perf_counter()
            batch = next(windows, None)
            totals["read"] += time.perf_counter() - began
            if batch is None:
                break
            began = time.perf_counter()
            images = pipeline.images(batch["waves"].to(device))
            totals["front end"] += finished() - began
            began = time.perf_counter()
            probability = pipeline.masks(images)
            totals["segmenter"] += finished() - began
            began = time.perf_counter()
            pipeline.calibrated(pipeline.classifier(images, pipeline.classifier_mask(probability)))
            totals["classifier"] += finished() - began
    return totals


def resident_mib() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS"))


def detection_memory(model: Path, seconds: float, folder: Path, batch_size: int) -> float:
    """Largest resident memory (MiB, sampled every 0.2 s) of this process while `detect` runs over a recording of
    `seconds`: it stays the same whatever the length when nothing grows with the file."""
    audio = write_recording(folder / f"memory_{int(seconds)}s.wav", seconds)
    samples, running = [], threading.Event()
    running.set()

    def watch() -> None:
        while running.is_set():
            samples.append(resident_mib())
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    detect([audio], model, folder / f"memory_{int(seconds)}", DetectSettings(batch_size=batch_size), progress=False)
    running.clear()
    watcher.join()
    return max(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--window", type=float, default=0.25, help="window length (the demo's 0.25 s)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--workers", type=int, default=0, help="mgc detect --workers: processes decoding the audio")
    parser.add_argument("--classifier-configs", type=Path, nargs="+", default=CLASSIFIER_CONFIGS,
                        help="the classifier's experiment configs, merged in order (default: the own-data recipe)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one classifier init arg, e.g. backbone_kwargs=null (full width)")
    parser.add_argument("--memory", type=float, nargs=2, metavar=("SHORT_S", "LONG_S"),
                        help="also measure the largest resident memory while detecting recordings of these two lengths")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        classifier = model_arguments(args.classifier_configs, args.set)
        bundle = recommended_bundle(args.window, classifier)
        model = folder / "model.mgc"
        save_bundle(bundle, model)
        audio = write_recording(folder / "recording.wav", args.seconds)
        settings = DetectSettings(batch_size=args.batch_size)
        began = time.perf_counter()
        summary = detect([audio], model, folder / "out", settings, accelerator=args.accelerator, progress=False,
                         workers=args.workers)
        whole = time.perf_counter() - began
        device = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
        stages = stage_times(bundle, audio, DetectSettings(hop_s=args.window, batch_size=args.batch_size), device)
        # what the whole path spends beyond the four stages: writing the outputs, Lightning's loop, start-up
        # (negative when the stages alone ran slower than inside the whole path: runs differ by a few per cent)
        stages["write and overhead"] = whole - sum(stages.values())
        results = {"classifier": {k: classifier[k] for k in ("backbone", "backbone_kwargs", "mask_input", "fusion")},
                   "audio_s": args.seconds, "batch_size": args.batch_size, "torch_threads": torch.get_num_threads(),
                   "whole_path_x_real_time": args.seconds / whole, "whole_path_s": whole,
                   "stages_x_real_time": {k: args.seconds / v for k, v in stages.items() if v > 0},
                   "stages_s": stages, "summary": summary.line()}
        if args.memory:
            results["detect_max_rss_mib"] = {f"{s:g} s": detection_memory(model, s, folder, args.batch_size)
                                             for s in args.memory}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
