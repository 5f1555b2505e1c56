"""The paper's protocol end to end, as resumable stages: synthesise -> spectrograms for every preset -> high-quality
masks -> segmenter -> predicted masks for every preset -> baselines and MGC models (per seed) -> OOD evaluation ->
report. Each stage records what it made under <data_dir>/pipeline/, so a rerun skips what is finished.

Training goes through the same `mgc fit` entry point and YAML experiments as `make train-*`; only arguments differ.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from .cache import compute_spectrograms, mask_store, spectrogram_store, write_bytes_atomic
from .manifest import SplitConfig, load_manifest, split_rows, write_manifest
from .mask_sources import select_high_quality
from .masks import soft_mask
from .spectrogram import get_preset
from .synth.build import BENCHMARK_PRESETS, build_benchmark, sized, write_ideal_masks


@dataclass(frozen=True)
class ClassifierSpec:
    """One model to train: a name, its YAML overlays (after classifier_base.yaml) and extra CLI arguments."""

    name: str
    configs: tuple[str, ...]
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class PipelineConfig:
    name: str
    data_dir: str
    classifiers: tuple[ClassifierSpec, ...]
    benchmark_preset: str = "demo"
    windows: int | None = None
    benchmark_seed: int = 0
    workers: int = 2
    cache_root: str = "data/cache"
    presets: tuple[str, ...] = ("origin", "mel", "pcen")  # the first one trains; the others are OOD tests
    hq_count: int = 200
    segmenter_config: str = "experiments/seg_unet.yaml"
    segmenter_args: tuple[str, ...] = ()
    classifier_base: str = "experiments/classifier_base.yaml"
    classifier_args: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0,)
    experiment: str = "demo"
    report_dir: str = "report"

    @classmethod
    def from_yaml(cls, path: str | Path) -> "PipelineConfig":
        raw = yaml.safe_load(Path(path).read_text()) or {}
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"{path}: unknown pipeline setting(s) {sorted(unknown)}; known: {sorted(known)}")
        try:
            specs = tuple(ClassifierSpec(s["name"], tuple(s["configs"]), tuple(str(a) for a in s.get("args", ())))
                          for s in raw.pop("classifiers"))
        except (KeyError, TypeError) as error:
            raise ValueError(f"{path}: each classifier needs a name and a list of configs ({error})") from error
        for key in ("presets", "segmenter_args", "classifier_args", "seeds"):
            if key in raw:
                raw[key] = tuple(str(a) if key.endswith("args") else a for a in raw[key])
        config = cls(classifiers=specs, **raw)
        for preset in config.presets:
            get_preset(preset)
        if config.benchmark_preset not in BENCHMARK_PRESETS:
            raise ValueError(f"{path}: benchmark_preset must be one of {sorted(BENCHMARK_PRESETS)}")
        if not config.classifiers or not config.seeds:
            raise ValueError(f"{path}: needs at least one classifier and one seed")
        return config


@dataclass
class Pipeline:
    config: PipelineConfig
    say: Callable[[str], None] = print
    state_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.state_dir = Path(self.config.data_dir) / "pipeline"

    # ---- stage records -------------------------------------------------------------------------------------------
    def _done(self, stage: str) -> dict | None:
        path = self.state_dir / f"{stage}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def _record(self, stage: str, value: dict) -> dict:
        write_bytes_atomic(self.state_dir / f"{stage}.json", json.dumps(value, indent=2).encode())
        return value

    # ---- stages -------------------------------------------------------------------------------------------------
    def data(self) -> Path:
        c = self.config
        manifest = build_benchmark(c.data_dir, sized(BENCHMARK_PRESETS[c.benchmark_preset], c.windows),
                                   seed=c.benchmark_seed, workers=c.workers)
        rows = load_manifest(manifest)
        for preset in c.presets:
            compute_spectrograms(rows, get_preset(preset), c.cache_root)
            write_ideal_masks(rows, get_preset(preset), c.cache_root)
        hq = Path(c.data_dir) / "hq.csv"
        if not hq.is_file():
            write_manifest(select_high_quality(rows, SplitConfig(), c.hq_count), hq)
        return manifest

    def _fit(self, args: list[str]) -> dict:
        from .training import run_lightning

        cli = run_lightning(["fit", *args])
        callback = cli.trainer.checkpoint_callback
        return {"best": str(Path(callback.best_model_path).resolve()),
                "last": str(Path(callback.last_model_path).resolve()), "run_id": cli.trainer.logger.run_id}

    def segmenter(self) -> dict:
        if (done := self._done("segmenter")) is not None:
            return done
        c = self.config
        self.say(f"training the segmenter ({c.segmenter_config})")
        return self._record("segmenter", self._fit([
            "--config", c.segmenter_config, "--data.init_args.manifest", str(Path(c.data_dir) / "hq.csv"),
            "--data.init_args.cache_root", c.cache_root,
            "--trainer.logger.init_args.experiment_name", f"{c.experiment}-segmentation", *c.segmenter_args]))

    def predicted_masks(self, manifest: Path, segmenter: dict) -> None:
        from .models.segmenter import predict_masks

        rows = load_manifest(manifest)
        for preset in self.config.presets:
            # a retrained segmenter replaces the masks of the one before it
            predict_masks(segmenter["best"], rows, get_preset(preset), self.config.cache_root, replace=True)

    def classifiers(self, manifest: Path) -> dict[str, dict]:
        c = self.config
        trained = {}
        for seed in c.seeds:
            for spec in c.classifiers:
                key = f"classifier-{spec.name}-seed{seed}"
                if (done := self._done(key)) is None:
                    self.say(f"training {spec.name} (seed {seed})")
                    configs = [a for path in (c.classifier_base, *spec.configs) for a in ("--config", path)]
                    done = self._record(key, self._fit([
                        *configs, "--data.init_args.manifest", str(manifest), "--data.init_args.cache_root",
                        c.cache_root, "--data.init_args.preset", c.presets[0], "--seed_everything", str(seed),
                        "--trainer.logger.init_args.experiment_name", c.experiment,
                        "--trainer.logger.init_args.run_name", f"{spec.name}-seed{seed}",
                        *c.classifier_args, *spec.args]))
                trained[key] = done
        return trained

    def ood(self, trained: dict[str, dict], segmenter: dict) -> None:
        from mlflow.tracking import MlflowClient

        from .evaluation import evaluate_checkpoint
        from .tracking import default_tracking_uri

        client = MlflowClient(default_tracking_uri())
        for key, done in trained.items():
            for preset in self.config.presets[1:]:
                if f"test/{preset}/joint_acc" in client.get_run(done["run_id"]).data.metrics:
                    continue
                self.say(f"evaluating {key} on {preset}")
                evaluate_checkpoint(done["best"], preset, segmenter=segmenter["best"])

    def panel(self, manifest: Path) -> tuple:
        """Three test windows with calls: spectrogram, high-quality (ideal) mask, predicted mask, soft version."""
        config = get_preset(self.config.presets[0])
        rows = load_manifest(manifest, check_audio=False)
        test = [rows[i] for i in split_rows(rows, SplitConfig())["test"]]
        chosen = [r for r in test if r.porpoise_click or r.beluga_click][:3]
        images = spectrogram_store(config, self.config.cache_root)
        ideal = mask_store(config, "ideal", self.config.cache_root)
        predicted = mask_store(config, "predicted", self.config.cache_root)
        columns = {"spectrogram": [images.load(r.key).astype(np.float32) for r in chosen],
                   "high-quality mask": [ideal.load(r.key) for r in chosen],
                   "generated mask": [predicted.load(r.key) for r in chosen],
                   "soft mask (sigma 3)": [soft_mask(predicted.load(r.key), 3.0) for r in chosen]}
        titles = [f"{r.recording} {r.start_s:g}s" for r in chosen]
        return columns, titles

    def run(self) -> Path:
        from .report import write_report

        manifest = self.data()
        segmenter = self.segmenter()
        self.predicted_masks(manifest, segmenter)
        trained = self.classifiers(manifest)
        self.ood(trained, segmenter)
        return write_report(self.config.experiment, self.config.report_dir, self.config.presets[0],
                            panel=self.panel(manifest))
