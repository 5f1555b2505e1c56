"""The pipeline's settings, typed and checked when its YAML is read (experiments/pipeline_demo.yaml is one): the
benchmark, the front ends, the one split every stage gets, the segmenter and the classifiers to train (their YAML
configs and `mgc fit` overrides), seeds, the confirmation benchmark and the curves. A setting a stage cannot take is
refused here, naming the file, before any stage runs."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Sequence

from ..audio.manifest import SplitConfig
from ..core.labels import NUM_JOINT_CLASSES
from ..frontend.config import get_preset
from ..synth.config import BENCHMARK_PRESETS
from ..train.overrides import Overrides, without_init_args

# The data module's split settings (keys without init_args): the pipeline's `split` sets them for every classifier.
_SPLIT_KEYS = frozenset({"data.split_by", "data.split_fractions", "data.split_seed"})
# Settings the YAML gives as lists (kept as tuples), and those it gives as `mgc fit` options (kept as Overrides).
_LISTS = ("presets", "seeds", "mask_curve", "learning_curve", "learning_curve_models", "few_shot_curve")
_OVERRIDES = ("segmenter_args", "classifier_args")


@dataclass(frozen=True)
class ClassifierSpec:
    """One model to train: a name, its YAML overlays (after classifier_base.yaml) and its overrides (the YAML's
    `args`, after the pipeline's `classifier_args`)."""

    name: str
    configs: tuple[str, ...]
    overrides: Overrides = Overrides()

    @property
    def args(self) -> tuple[str, ...]:
        """The overrides as `mgc fit` options."""
        return self.overrides.arguments()


@dataclass(frozen=True)
class ConfirmationConfig:
    """A second benchmark of the same generator settings, with its own seed and deployment and site names (all
    prefixed with `name_prefix`), on which every model is tested once."""

    data_dir: str
    seed: int
    windows: int
    name_prefix: str = "C"


@dataclass(frozen=True)
class PipelineConfig:
    name: str
    data_dir: str
    classifiers: tuple[ClassifierSpec, ...]
    benchmark_preset: str = "demo"
    windows: int | None = None
    windows_per_recording: int | None = None  # None: the benchmark preset's
    benchmark_seed: int = 0
    workers: int | None = 2  # processes for synthesis and audio reading; None: one per CPU core
    cache_root: str = "data/cache"
    presets: tuple[str, ...] = ("origin", "mel", "pcen")  # the first one trains; the others are OOD tests
    split: SplitConfig = SplitConfig()  # the one train/val/test split every stage gets
    hq_count: int = 200
    segmenter_config: str = "experiments/seg_unet.yaml"
    segmenter_args: Overrides = Overrides()
    classifier_base: str = "experiments/classifier_base.yaml"
    classifier_args: Overrides = Overrides()  # every classifier's, before its own
    seeds: tuple[int, ...] = (0,)
    experiment: str = "demo"
    report_dir: str = "report"  # inside output_dir when that is set
    output_dir: str | None = None  # one folder for everything but the data (see the module's docstring)
    confirmation: ConfirmationConfig | None = None
    mask_curve: tuple[float, ...] = ()  # IoUs of the degraded exact masks (run with `mgc pipeline --mask-curve`)
    mask_curve_model: str | None = None  # the classifier whose recipe the curve trains on them
    # `mgc pipeline --learning-curve`: the named classifiers again on this many labelled training windows each
    learning_curve: tuple[int, ...] = ()
    learning_curve_models: tuple[str, ...] = ()
    # `mgc pipeline --few-shot-curve`: the segmenter again on this many high-quality masks, in either order
    few_shot_curve: tuple[int, ...] = ()
    # the folder of public real clips (../shared/data/real) the real-noise test is built from (docs/real_noise.md);
    # None: no real-noise test. A folder that is absent skips the test with one line. Needs `confirmation` (its
    # headline prints the rows).
    real_noise: str | None = None

    @classmethod
    def from_yaml(cls, path: str | Path, seeds: Sequence[int] | None = None) -> "PipelineConfig":
        """The YAML's settings, typed and checked; `seeds` replaces its seeds (a command line's choice)."""
        from ..train.lightning_cli import read_config_files  # one line naming the file for a missing or malformed YAML

        raw = dict(read_config_files(["--config", str(path)])[str(path)])
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"{path}: unknown pipeline setting(s) {sorted(unknown)}; known: {sorted(known)}")
        if seeds:
            raw["seeds"] = list(seeds)
        config = cls(**_typed_settings(path, raw))
        config._check_settings(path)
        config._check_curves(path)
        return config

    def _check_settings(self, path: str | Path) -> None:
        for preset in self.presets:
            get_preset(preset)
        if self.benchmark_preset not in BENCHMARK_PRESETS:
            raise ValueError(f"{path}: benchmark_preset must be one of {sorted(BENCHMARK_PRESETS)}")
        if not self.classifiers or not self.seeds:
            raise ValueError(f"{path}: needs at least one classifier and one seed")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"{path}: workers must be a positive number or null (one per CPU core)")
        if self.confirmation is not None and Path(self.confirmation.data_dir) == Path(self.data_dir):
            raise ValueError(f"{path}: the confirmation benchmark needs a data_dir of its own")
        if self.real_noise is not None and self.confirmation is None:
            raise ValueError(f"{path}: real_noise needs a confirmation benchmark: the real-noise rows are printed in "
                             "the confirmation benchmark's headline, which a pipeline without `confirmation` has not")

    def _check_curves(self, path: str | Path) -> None:
        names = {spec.name for spec in self.classifiers}
        if self.mask_curve and self.mask_curve_model not in names:
            raise ValueError(f"{path}: mask_curve_model must name one of the classifiers, got "
                             f"{self.mask_curve_model!r}")
        unknown_models = set(self.learning_curve_models) - names
        if unknown_models or bool(self.learning_curve) != bool(self.learning_curve_models):
            raise ValueError(f"{path}: learning_curve (sizes) and learning_curve_models (names of its classifiers) go "
                             f"together; unknown classifier(s): {sorted(unknown_models) or 'none'}")
        if (not all(isinstance(size, int) and size >= NUM_JOINT_CLASSES for size in self.learning_curve)
                or len(set(self.learning_curve)) < len(self.learning_curve)):
            raise ValueError(f"{path}: learning_curve sizes must be distinct numbers of windows of at least "
                             f"{NUM_JOINT_CLASSES} (one per joint class), got {list(self.learning_curve)}")
        if (not all(isinstance(size, int) and size > 1 for size in self.few_shot_curve)
                or list(self.few_shot_curve) != sorted(set(self.few_shot_curve))):
            raise ValueError(f"{path}: few_shot_curve must list increasing numbers of masks of at least 2, got "
                             f"{list(self.few_shot_curve)}")
        if not all(0 < iou < 1 for iou in self.mask_curve):
            raise ValueError(f"{path}: every mask_curve IoU must lie between 0 and 1, got {list(self.mask_curve)}")

    @property
    def processes(self) -> int:
        return self.workers or os.cpu_count() or 1


def _typed_settings(path: str | Path, raw: dict) -> dict:
    """The YAML's settings as the config's types: classifiers, tuples for lists, Overrides for `mgc fit` options,
    the split and the confirmation benchmark."""
    settings = dict(raw, classifiers=_classifiers_from_yaml(path, raw))
    for key in _LISTS:
        if key in settings and not isinstance(settings[key], list):
            raise ValueError(f"{path}: {key} must be a list, got {settings[key]!r}")
    settings.update({key: tuple(settings[key]) for key in _LISTS if key in settings})
    settings.update({key: _overrides_from_yaml(path, key, settings[key]) for key in _OVERRIDES if key in settings})
    _refuse_split_overrides(path, {"classifier_args": settings.get("classifier_args", Overrides()),
                                   **{f"classifier {spec.name!r} args": spec.overrides
                                      for spec in settings["classifiers"]}})
    if "split" in settings:
        settings["split"] = _split_from_yaml(path, settings["split"])
    if settings.get("confirmation") is not None:
        try:
            settings["confirmation"] = ConfirmationConfig(**dict(settings["confirmation"]))
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: confirmation needs data_dir, seed and windows ({error})") from error
    return settings


def _classifiers_from_yaml(path: str | Path, raw: dict) -> tuple[ClassifierSpec, ...]:
    try:
        named = [(s["name"], tuple(s["configs"]), s.get("args", [])) for s in raw["classifiers"]]
    except (KeyError, TypeError) as error:
        raise ValueError(f"{path}: each classifier needs a name and a list of configs ({error})") from error
    return tuple(ClassifierSpec(name, configs, _overrides_from_yaml(path, f"classifier {name!r} args", args))
                 for name, configs, args in named)


def _overrides_from_yaml(path: str | Path, where: str, options: object) -> Overrides:
    if not isinstance(options, list):
        raise ValueError(f"{path}: {where} must be a list of --key value options, got {options!r}")
    try:
        return Overrides.parse(options)
    except ValueError as error:
        raise ValueError(f"{path}: {where}: {error}") from error


def _refuse_split_overrides(path: str | Path, overrides: dict[str, Overrides]) -> None:
    """A classifier given a split of its own would split the windows differently from the high-quality set (drawn
    from the pipeline split's train side) and from the report."""
    for where, given in overrides.items():
        keys = [key for key in given.keys() if without_init_args(key) in _SPLIT_KEYS]
        if keys:
            raise ValueError(f"{path}: {where}: {', '.join(keys)} would split the windows differently from the "
                             "high-quality set and the report; set the pipeline's `split` instead")


def _split_from_yaml(path: str | Path, raw: object) -> SplitConfig:
    try:
        values = dict(raw)
        if "fractions" in values:
            values["fractions"] = tuple(float(f) for f in values["fractions"])
        return SplitConfig(**values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: split needs group_by, fractions (train, val, test) and seed ({error})") from error
