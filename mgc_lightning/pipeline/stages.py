"""The paper's protocol end to end, as resumable stages: synthesise -> spectrograms for every preset -> high-quality
masks -> segmenter -> predicted masks -> baselines and MGC models (per seed) -> tests on every front end -> report.
Each stage records what it made under <data_dir>/pipeline/, so a rerun skips what is finished. One split (the YAML's
`split`) reaches every stage, so the segmenter's training windows stay on the classifier's train side.

With a `confirmation` benchmark (a second one, built like the first with another seed and other deployment and site
names), every model is tested on all of its windows on every front end, and the report's headline is measured there:
the main benchmark's test split, on which earlier choices were made, stays a development test (training front end
only). No setting may be chosen on the confirmation benchmark. `mask_curve` trains one classifier recipe on exact
masks degraded to each IoU (masks/degrade.py), for the report's mask-quality curve; `few_shot_curve` trains the
segmenter on that many high-quality masks, drawn at random or by its uncertainty (evaluate/few_shot.py). The
front-end looks of every fit are refused when they could reproduce a front end the pipeline tests (data.augment.FrontEndAugment.settings_near).

With `output_dir` set, everything a run writes except the data (MLflow store and artifacts, checkpoints, stage
records, the report, stage_times.json) lies in that one folder, which can be copied off a borrowed GPU machine.
With a GPU, spectrograms and masks are computed on it; each stage's wall time goes to stage_times.json.

Training goes through the same `mgc fit` entry point and YAML experiments as `make train-*`; only arguments differ.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from ..audio.manifest import SPLITS, WindowRow, load_manifest, split_rows, write_manifest
from ..core.atomic import write_bytes_atomic
from ..core.mlflow_store import TRACKING_URI_ENV, default_tracking_uri
from ..data.augment import FrontEndAugment
from ..evaluate.few_shot import ORDERS, FewShotPoint, epochs_for, grown_by_uncertainty, mask_overlaps
from ..evaluate.intervals import Interval
from ..frontend.cache import compute_spectrograms, mask_store, spectrogram_store
from ..frontend.spectrogram import get_preset
from ..masks.degrade import degraded_source, write_degraded_masks
from ..masks.ops import soft_mask
from ..masks.sources import IDEAL, PREDICTED, evaluate_masks, label_readout, select_high_quality
from ..report.comparison import Headline, MaskQuality, write_report
from ..synth.build import build_benchmark, write_ideal_masks
from ..synth.config import BENCHMARK_PRESETS, sized
from .config import ClassifierSpec, PipelineConfig

# The data modules' front-end looks (shares of training items, see data.augment.FrontEndAugment).
LOOKS = ("warp_probability", "stretch_probability", "power_probability", "gain_control_probability")

STAGE_TIMES = "stage_times.json"


@dataclass
class Pipeline:
    config: PipelineConfig
    say: Callable[[str], None] = print
    mask_curve: bool = False  # also train the mask-quality curve's models
    learning_curve: bool = False  # also train the learning curve's models
    few_shot_curve: bool = False  # also train the few-shot curve's segmenters
    reported_headline: Headline | None = field(init=False, default=None)  # what run() measured the headline on
    state_dir: Path = field(init=False)
    output_dir: Path | None = field(init=False)
    device: str = field(init=False)

    def __post_init__(self) -> None:
        c = self.config
        self.output_dir = Path(c.output_dir).resolve() if c.output_dir else None
        self.state_dir = (self.output_dir or Path(c.data_dir)) / "pipeline"
        self.device = "cuda" if torch.cuda.is_available() else "cpu"

    @property
    def tracking_uri(self) -> str:
        """The output folder's SQLite store, else the usual default (MLFLOW_TRACKING_URI or ./mlflow.db)."""
        return f"sqlite:///{self.output_dir / 'mlflow.db'}" if self.output_dir else default_tracking_uri()

    @property
    def report_dir(self) -> Path:
        return self.output_dir / self.config.report_dir if self.output_dir else Path(self.config.report_dir)

    @contextlib.contextmanager
    def _tracking(self) -> Iterator[None]:
        """Every MLflow client of the run (training, evaluation, report) uses the pipeline's store for its duration;
        artifacts go beside the store (core.mlflow_store.artifact_root)."""
        before = os.environ.get(TRACKING_URI_ENV)
        os.environ[TRACKING_URI_ENV] = self.tracking_uri
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(TRACKING_URI_ENV, None)
            else:
                os.environ[TRACKING_URI_ENV] = before

    # ---- stage wall times ----------------------------------------------------------------------------------------
    @property
    def times_path(self) -> Path:
        return (self.output_dir or self.state_dir) / STAGE_TIMES

    def stage_times(self) -> dict[str, dict]:
        return json.loads(self.times_path.read_text()) if self.times_path.is_file() else {}

    @contextlib.contextmanager
    def _timed(self, stage: str) -> Iterator[dict]:
        """Times the block and records it in stage_times.json, unless the block marks itself skipped (its work was
        done before): the file keeps the wall time of the run that did each stage's work."""
        outcome = {"skipped": False}
        started = time.perf_counter()
        yield outcome
        if not outcome["skipped"]:
            times = self.stage_times()
            times[stage] = {"seconds": round(time.perf_counter() - started, 2), "device": self.device,
                            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            write_bytes_atomic(self.times_path, json.dumps(times, indent=2).encode())

    def times_table(self) -> str:
        times = self.stage_times()
        lines = ["| stage | seconds | device |", "|---|---:|---|"]
        lines += [f"| {stage} | {entry['seconds']:.1f} | {entry['device']} |" for stage, entry in times.items()]
        lines.append(f"| total | {sum(entry['seconds'] for entry in times.values()):.1f} | |")
        return "\n".join(lines)

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
        manifest = self._benchmark("synth", c.data_dir, c.windows, c.benchmark_seed)
        rows = load_manifest(manifest)
        for preset, windows in self._windows_per_preset(rows).items():
            self._front_end_and_ideal_masks(preset, windows, "")
        self.high_quality_set(rows)
        return manifest

    def confirmation_data(self) -> Path | None:
        """The confirmation benchmark on every front end, with its exact masks (the perfect segmenter's row and the
        mask-quality curve read them); None without one."""
        c = self.config.confirmation
        if c is None:
            return None
        manifest = self._benchmark("synth-confirmation", c.data_dir, c.windows, c.seed, c.name_prefix)
        rows = load_manifest(manifest)
        for preset in self.config.presets:
            self._front_end_and_ideal_masks(preset, rows, "-confirmation")
        return manifest

    def _benchmark(self, stage: str, data_dir: str, windows: int | None, seed: int, name_prefix: str = "") -> Path:
        c = self.config
        with self._timed(stage) as synth:
            synth["skipped"] = (Path(data_dir) / "manifest.csv").is_file()
            benchmark = sized(BENCHMARK_PRESETS[c.benchmark_preset], windows, c.windows_per_recording)
            return build_benchmark(data_dir, replace(benchmark, name_prefix=name_prefix), seed=seed,
                                   workers=c.processes)

    def _front_end_and_ideal_masks(self, preset: str, windows: Sequence[WindowRow], suffix: str) -> None:
        c = self.config
        with self._timed(f"spectrograms-{preset}{suffix}") as stage:
            stage["skipped"] = not compute_spectrograms(windows, get_preset(preset), c.cache_root, device=self.device,
                                                        batch_size=64, num_workers=c.processes)
        with self._timed(f"ideal-masks-{preset}{suffix}") as stage:
            stage["skipped"] = not write_ideal_masks(windows, get_preset(preset), c.cache_root, device=self.device,
                                                     num_workers=c.processes)

    def _windows_per_preset(self, rows: Sequence[WindowRow]) -> dict[str, Sequence[WindowRow]]:
        """Every window on the training front end; only the test split on the others, which models are tested on
        unless a confirmation benchmark takes those tests."""
        if self.config.confirmation is not None:
            return {self.config.presets[0]: rows}
        test = [rows[i] for i in split_rows(rows, self.config.split)["test"]]
        return {preset: rows if index == 0 else test for index, preset in enumerate(self.config.presets)}

    def high_quality_set(self, rows: Sequence[WindowRow]) -> dict[str, int]:
        """Select hq.csv, the segmenter's training set, from the train side of the one split (once), and record how
        many of its windows each classifier split holds: the segmenter draws better masks there, so one in val or
        test would show checkpoint selection or the test better masks than unseen windows get. Refuses stage records
        or an hq.csv made under another split."""
        c = self.config
        hq = Path(c.data_dir) / "hq.csv"
        settings = {"group_by": c.split.group_by, "fractions": list(c.split.fractions), "seed": c.split.seed}
        recorded = self._done("split")
        if recorded is not None and recorded["settings"] != settings:
            raise ValueError(f"{self.state_dir} holds stages made with split {recorded['settings']}, the config now "
                             f"says {settings}: delete {self.state_dir} and {hq} to rerun them with the new split")
        if not hq.is_file():
            write_manifest(select_high_quality(rows, c.split, c.hq_count), hq)
        side_of = {rows[i].span: side for side, indices in split_rows(rows, c.split).items() for i in indices}
        hq_sides = [side_of.get(row.span) for row in load_manifest(hq, check_audio=False)]
        counts = {side: hq_sides.count(side) for side in SPLITS}
        if counts["val"] or counts["test"]:
            raise ValueError(f"{hq} holds {counts['val']} validation and {counts['test']} test window(s) of split "
                             f"{settings}: delete it and {self.state_dir} to reselect it and retrain")
        return self._record("split", {"settings": settings, "segmenter_windows": counts})["segmenter_windows"]

    def _split_args(self) -> list[str]:
        split = self.config.split
        return ["--data.init_args.split_by", split.group_by, "--data.init_args.split_fractions",
                json.dumps(list(split.fractions)), "--data.init_args.split_seed", str(split.seed)]

    def _fit(self, args: list[str]) -> dict:
        from ..core.stopping import last_checkpoint
        from ..evaluate.callbacks import run_callbacks
        from ..train.lightning_cli import run_lightning

        where = ["--trainer.default_root_dir", str(self.output_dir / "checkpoints")] if self.output_dir else []
        cli = run_lightning(["fit", *where, *args], run_callbacks())
        return {"best": str(Path(cli.trainer.checkpoint_callback.best_model_path).resolve()),
                "last": str(Path(last_checkpoint(cli.trainer)).resolve()), "run_id": cli.trainer.logger.run_id}

    def segmenter(self) -> dict:
        with self._timed("segmenter") as stage:
            if (done := self._done("segmenter")) is not None:
                stage["skipped"] = True
                return done
            self.say(f"training the segmenter ({self.config.segmenter_config})")
            return self._record("segmenter", self._train_segmenter(Path(self.config.data_dir) / "hq.csv"))

    def _train_segmenter(self, masks: Path, *extra: str) -> dict:
        c = self.config
        return self._fit([
            "--config", c.segmenter_config, "--data.init_args.manifest", str(masks),
            "--data.init_args.cache_root", c.cache_root,
            # hq.csv lies inside the train side, where a coarse column (site, season) may hold a single group:
            # the segmenter splits it into its own train / val by recording, with the pipeline's seed
            "--data.init_args.split_by", "recording", "--data.init_args.split_seed", str(c.split.seed),
            "--trainer.logger.init_args.experiment_name", f"{c.experiment}-segmentation",
            *c.segmenter_args.arguments(), *extra])

    def predicted_masks(self, manifest: Path, confirmation: Path | None, segmenter: dict) -> None:
        from ..masks.predict import predict_masks
        from ..models.segmenter import load_segmenter

        windows = {preset: [(rows, "")] for preset, rows in self._windows_per_preset(load_manifest(manifest)).items()}
        if confirmation is not None:
            confirmation_rows = load_manifest(confirmation)  # read once, for every front end
            for preset in self.config.presets:
                windows.setdefault(preset, []).append((confirmation_rows, "-confirmation"))
        for preset, sets in windows.items():
            for rows, suffix in sets:
                with self._timed(f"predicted-masks-{preset}{suffix}") as stage:
                    # a retrained segmenter replaces the masks of the one before it
                    stage["skipped"] = not predict_masks(
                        load_segmenter(segmenter["best"], self.device), segmenter["best"], rows, get_preset(preset),
                        self.config.cache_root, device=self.device, replace=True)

    def few_shot_points(self, manifest: Path, confirmation: Path | None, segmenter: dict) -> list[FewShotPoint]:
        """The few-shot curve (evaluate/few_shot.py), one segmenter per order and number of masks, each tested on the
        validation windows and on the confirmation windows of every front end. The random draw of hq_count masks is
        the pipeline's own segmenter, and both orders start from the same smallest draw. Without `few_shot_curve`
        set on the run: the points a run before made with the same segmenter recipe."""
        points, recipe = [], self._few_shot_recipe(segmenter)
        for order in ORDERS:
            chosen, previous = [], None
            for size in self.config.few_shot_curve:
                key = f"few-shot-{order}-{size}"
                if (done := self._done(key)) is not None and done.get("recipe") != recipe:
                    if self.few_shot_curve:
                        raise ValueError(f"{self.state_dir / key}.json was made with the segmenter recipe "
                                         f"{done.get('recipe')}, the run now has {recipe}: delete "
                                         f"{self.state_dir}/few-shot-*.json to train the curve again")
                    done = None  # stale: not reported
                if done is None and self.few_shot_curve:
                    with self._timed(key):
                        done = self._record(key, {**self._few_shot_point(order, size, chosen, previous, manifest,
                                                                         confirmation, segmenter), "recipe": recipe})
                if done is None:
                    break  # an uncertain round grows the one before it
                chosen, previous = load_manifest(done["windows"], check_audio=False), done["best"]
                points.append(FewShotPoint(order, size, {name: Interval(**i) for name, i in done["iou"].items()}))
        return points

    def _few_shot_recipe(self, segmenter: dict) -> dict:
        """What every point of the curve depends on besides its windows: a change makes the recorded points stale."""
        c = self.config
        return {"segmenter_config": c.segmenter_config, "segmenter_args": list(c.segmenter_args.arguments()),
                "hq_count": c.hq_count, "split_seed": c.split.seed, "segmenter": segmenter["best"]}

    def _few_shot_point(self, order: str, size: int, chosen: list[WindowRow], previous: str | None, manifest: Path,
                        confirmation: Path | None, segmenter: dict) -> dict:
        from ..models.segmenter import load_segmenter
        from ..train.lightning_cli import configured_value

        c = self.config
        rows, origin = load_manifest(manifest), get_preset(c.presets[0])
        if order == "random" or previous is None:
            windows = select_high_quality(rows, c.split, size)  # the draw hq.csv is, so it nests with it
        else:
            pool = [rows[i] for i in split_rows(rows, c.split)["train"]]
            windows = grown_by_uncertainty(chosen, pool, size, load_segmenter(previous), origin, c.cache_root)
        listed = Path(c.data_dir) / "few-shot" / f"{order}-{size}.csv"
        write_manifest(windows, listed)
        segmenter_args = ["--config", c.segmenter_config, *c.segmenter_args.arguments()]
        epochs = epochs_for(size, c.hq_count, int(configured_value(segmenter_args, "trainer.max_epochs")))
        hq = [row.key for row in load_manifest(Path(c.data_dir) / "hq.csv", check_audio=False)]
        if order == "random" and [row.key for row in windows] == hq:
            trained = segmenter  # the same windows and recipe
        elif order == "uncertain" and previous is None:
            trained = self._done(f"few-shot-random-{size}")  # the same smallest draw
        else:
            self.say(f"few-shot curve: training the segmenter on {size} masks ({order})")
            trained = self._train_segmenter(listed, "--trainer.max_epochs", str(epochs),
                                            "--trainer.logger.init_args.run_name", f"few-shot-{order}-{size}")
        if "iou" in trained:  # the random draw's point: the same segmenter, already tested on the same windows
            return {"windows": str(listed), "best": trained["best"], "epochs": epochs, "iou": trained["iou"]}
        model = load_segmenter(trained["best"])
        tested = {f"validation {origin.name}": ([rows[i] for i in split_rows(rows, c.split)["val"]], origin)}
        if confirmation is not None:
            confirmation_rows = load_manifest(confirmation)
            tested.update({f"confirmation {preset}": (confirmation_rows, get_preset(preset)) for preset in c.presets})
        iou = {name: asdict(mask_overlaps(model, windows_tested, config, c.cache_root).iou())
               for name, (windows_tested, config) in tested.items()}
        return {"windows": str(listed), "best": trained["best"], "epochs": epochs, "iou": iou}

    def specs(self) -> list[ClassifierSpec]:
        """The YAML's classifiers; with the mask curve, its model once per degraded IoU and once on the exact masks
        (a perfect segmenter, the curve's end); with the learning curve, its models once per training-set size."""
        c = self.config
        specs = list(c.classifiers)
        named = {spec.name: spec for spec in c.classifiers}
        if self.mask_curve:
            model = named[c.mask_curve_model]
            specs += [replace(model, name=f"{model.name}-iou{iou:.2f}",
                              overrides=model.overrides.with_value("data.init_args.mask_source", degraded_source(iou)))
                      for iou in c.mask_curve]
            specs.append(replace(model, name=f"{model.name}-perfect-segmenter",
                                 overrides=model.overrides.with_value("data.init_args.mask_source", IDEAL)))
        if self.learning_curve:
            specs += [replace(named[name], name=f"{name}-n{size}",
                              overrides=named[name].overrides.with_value("data.init_args.train_windows", str(size)))
                      for size in c.learning_curve for name in c.learning_curve_models]
        return specs

    def degraded_masks(self, manifest: Path, confirmation: Path | None) -> dict[str, float]:
        """Exact masks degraded to each IoU of the curve: every window of the training front end (the classifier
        trains on them), every confirmation window on every front end; returns each source's achieved IoU on the
        confirmation (else main) windows of the training front end."""
        c = self.config
        if not self.mask_curve:  # a run without the curve still reports the curve a run before it made
            return {degraded_source(iou): done["iou"] for iou in c.mask_curve
                    if (done := self._done(f"degraded-masks-{iou:.2f}-{c.presets[0]}"
                                           f"{'-confirmation' if confirmation else ''}")) is not None}
        sets = [(load_manifest(manifest), c.presets[0], "")]
        if confirmation is not None:
            sets += [(load_manifest(confirmation), preset, "-confirmation") for preset in c.presets]
        achieved = {}
        for iou in c.mask_curve:
            for rows, preset, suffix in sets:
                key = f"degraded-masks-{iou:.2f}-{preset}{suffix}"
                with self._timed(key) as stage:
                    if (done := self._done(key)) is None:
                        done = self._record(key, {"iou": write_degraded_masks(
                            rows, get_preset(preset), c.cache_root, iou, progress=False)})
                    else:
                        stage["skipped"] = True
                if preset == c.presets[0] and (suffix or confirmation is None):
                    achieved[degraded_source(iou)] = done["iou"]
        return achieved

    def check_looks(self, args: list[str], what: str) -> None:
        """Refuses a fit whose front-end looks could reproduce a front end this pipeline tests: that test would no
        longer be out of distribution."""
        from ..train.lightning_cli import configured_value

        looks = {name: float(configured_value(args, f"data.init_args.{name}", 0.0) or 0.0) for name in LOOKS}
        augment = FrontEndAugment(get_preset(self.config.presets[0]), **looks)
        for preset in self.config.presets[1:]:
            near = augment.settings_near(get_preset(preset))
            if near:
                raise ValueError(f"{what}: its front-end looks ({', '.join(near)}; settings {looks}) could reproduce "
                                 f"the tested front end {preset!r}, which would then be no out-of-distribution test; "
                                 "turn those looks off or narrow their ranges")

    def classifiers(self, manifest: Path) -> dict[str, dict]:
        c = self.config
        trained = {}
        for seed in c.seeds:
            for spec in self.specs():
                key = f"classifier-{spec.name}-seed{seed}"
                with self._timed(key) as stage:
                    if (done := self._done(key)) is None:
                        self.say(f"training {spec.name} (seed {seed})")
                        configs = [a for path in (c.classifier_base, *spec.configs) for a in ("--config", path)]
                        args = [*configs, "--data.init_args.manifest", str(manifest), "--data.init_args.cache_root",
                                c.cache_root, "--data.init_args.preset", c.presets[0], *self._split_args(),
                                "--seed_everything", str(seed),
                                "--trainer.logger.init_args.experiment_name", c.experiment,
                                "--trainer.logger.init_args.run_name", f"{spec.name}-seed{seed}",
                                *c.classifier_args.arguments(), *spec.args]
                        self.check_looks(args, f"classifier {spec.name}")
                        done = self._record(key, self._fit(args))
                    else:
                        stage["skipped"] = True
                trained[key] = done
        return trained

    def tests(self, trained: dict[str, dict], segmenter: dict, confirmation: Path | None) -> None:
        """Every model on every front end of the confirmation benchmark when there is one, else on the OOD front
        ends of the main benchmark's test split (the training front end's test comes with each fit)."""
        from mlflow.tracking import MlflowClient

        from ..evaluate.ood import evaluate_checkpoint
        from ..train.tracking import DATASET_TAG, finished_evaluations

        client = MlflowClient(default_tracking_uri())
        presets = self.config.presets if confirmation is not None else self.config.presets[1:]
        dataset = str((confirmation or Path(self.config.data_dir) / "manifest.csv").resolve())
        stage_name = "confirmation-tests" if confirmation is not None else "ood-evaluation"
        with self._timed(stage_name) as stage:
            stage["skipped"] = True
            for key, done in trained.items():
                evaluated = {name for run in finished_evaluations(client, done["run_id"])
                             if run.data.tags.get(DATASET_TAG) == dataset for name in run.data.metrics}
                for preset in presets:
                    if f"test/{preset}/joint_acc" in evaluated:
                        continue
                    self.say(f"testing {key} on {preset}" + (" (confirmation benchmark)" if confirmation else ""))
                    evaluate_checkpoint(done["best"], preset, segmenter=segmenter["best"], manifest=confirmation)
                    stage["skipped"] = False

    def energy_detector(self, manifest: Path, confirmation: Path | None) -> dict[str, dict[str, str]]:
        """The floor beside chance: a band-energy detector fitted on the train split, on the confirmation windows of
        the training front end, with the same recording-level interval as the models."""
        from ..evaluate.energy_detector import detect, fit_detector, labels_of, window_features
        from ..evaluate.intervals import bootstrap_interval

        if confirmation is None:
            return {}
        config = get_preset(self.config.presets[0])
        with self._timed("energy-detector") as stage:
            done = self._done("energy-detector")
            if done is None or done.get("tested_on") != str(confirmation.resolve()):
                rows = load_manifest(manifest)
                train = [rows[i] for i in split_rows(rows, self.config.split)["train"]]
                detector = fit_detector(window_features(train, config), labels_of(train))
                tested = load_manifest(confirmation)
                correct = (detect(window_features(tested, config), detector) == labels_of(tested)).all(axis=1)
                done = self._record("energy-detector", {"tested_on": str(confirmation.resolve()),
                                                        "correct": correct.astype(int).tolist(),
                                                        "recordings": [row.recording for row in tested]})
            else:
                stage["skipped"] = True
        interval = bootstrap_interval(done["correct"], groups=done["recordings"])
        return {"band-energy detector (thresholds fitted on the train split)":
                {config.name: f"{interval} ({interval.groups} rec., {interval.windows} win.)"}}

    @property
    def real_noise_dir(self) -> Path:
        """Where the real-noise test set is built: beside the benchmark (data/demo -> data/demo-real-noise)."""
        data = Path(self.config.data_dir)
        return data.parent / f"{data.name}-real-noise"

    def real_noise_test(self, trained: dict[str, dict], segmenter: dict) -> dict[str, dict]:
        """The YAML's classifiers (real_noise_models) on the real-noise test set (synth/real_noise.py,
        evaluate/real_noise.py): built once from the YAML's `real_noise` clips folder, each model measured once per
        checkpoint; returns the stage records per model.
        Without the clips folder (a clone without ../shared) one line says so and nothing else happens."""
        from ..evaluate.real_noise import MEASURES_VERSION, evaluate_on_real_noise, table_row
        from ..synth.real_noise import build_real_noise

        c = self.config
        if c.real_noise is None:
            return {}
        clips = Path(c.real_noise)
        if not clips.is_dir():
            self.say(f"real-noise test skipped: the public real clips are not at {clips} (`real_noise` in the "
                     "pipeline YAML; they live beside the repository, see docs/real_noise.md)")
            return {}
        with self._timed("real-noise-set") as stage:
            stage["skipped"] = (self.real_noise_dir / "build.json").is_file()
            manifest = build_real_noise(clips, self.real_noise_dir)
        records, built = {}, hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]  # a rebuilt set is measured again
        with self._timed("real-noise-test") as stage:
            stage["skipped"] = True
            for key, done in self.real_noise_models(trained).items():
                record = self._done(f"real-noise-{key}")
                if record is None or (record["checkpoint"], record["set"], record.get("measures_version")) != (
                        done["best"], built, MEASURES_VERSION):
                    self.say(f"testing {key} on the real-noise set ({self.real_noise_dir})")
                    measures = evaluate_on_real_noise(done["best"], manifest, c.presets[0], segmenter["best"],
                                                      c.cache_root)
                    record = self._record(f"real-noise-{key}", {
                        "checkpoint": done["best"], "manifest": str(manifest.resolve()), "set": built,
                        "measures_version": MEASURES_VERSION,
                        "row": table_row(key.removeprefix("classifier-"), measures), "goals": measures.goals,
                        "measures": asdict(measures)})
                    stage["skipped"] = False
                records[key] = record
        return records

    def real_noise_calibrated(self, trained: dict[str, dict], segmenter: dict, manifest: Path,
                              tested: dict[str, dict]) -> dict[str, dict]:
        """The operating points a user would deploy, checked on the real-noise set (issue #25 item 3): each model the
        real-noise test measured (`tested`, whose records name the set and its hash) exported with the segmenter and
        calibrated on the benchmark's validation windows for precision 0.9, as `mgc export` and `mgc calibrate` do,
        then measured on the set at its own thresholds; the bundles (pipeline/bundles/NAME.mgc) go to `mgc detect` as
        they are. Once per checkpoint, segmenter and set; returns the records."""
        from ..evaluate.real_noise import DEPLOYED_VERSION, calibrated_on_real_noise

        records = {}
        with self._timed("real-noise-calibrated") as stage:
            stage["skipped"] = True
            for key, done in self.real_noise_models(trained).items():
                if key not in tested:
                    continue
                keyed = {"checkpoint": done["best"], "segmenter": segmenter["best"], "set": tested[key]["set"],
                         "measures_version": DEPLOYED_VERSION}
                record = self._done(f"real-noise-calibrated-{key}")
                if (record is None or {k: record.get(k) for k in keyed} != keyed
                        or not Path(record["bundle"]).is_file()):
                    self.say(f"calibrating {key} on the validation windows, then testing it on the real-noise set")
                    name = key.removeprefix("classifier-")
                    measured = calibrated_on_real_noise(name, done["best"], segmenter["best"], manifest,
                                                        self.config.split, tested[key]["manifest"],
                                                        (self.state_dir / "bundles" / f"{name}.mgc").resolve())
                    record = self._record(f"real-noise-calibrated-{key}", {**keyed, **measured})
                    stage["skipped"] = False
                records[key] = record
        return records

    def real_noise_models(self, trained: dict[str, dict]) -> dict[str, dict]:
        """The trained models the real-noise test takes: the YAML's classifiers, every seed; not the curves' models
        (exact or degraded masks exist for benchmark windows only)."""
        own = {f"classifier-{spec.name}-seed{seed}" for spec in self.config.classifiers for seed in self.config.seeds}
        return {key: done for key, done in trained.items() if key in own}

    def real_noise_section(self, records: dict[str, dict],
                           deployed: dict[str, dict] | None = None) -> tuple[dict[str, dict[str, str]], str]:
        """The headline's rows (joint accuracy on the real-noise test, beside the benchmark's) and its section, with
        the deployed operating points' table (real_noise_calibrated) when there are any."""
        from ..evaluate.real_noise import CAVEAT, CHANCE, chance_row, table

        if not records:
            return {}, ""
        rows = {f"{key.removeprefix('classifier-')} on the real-noise test (docs/real_noise.md)":
                {self.config.presets[0]: record["row"][1]} for key, record in records.items()}
        chance = chance_row(next(iter(records.values()))["manifest"])
        rows[f"{CHANCE} on the real-noise test"] = {self.config.presets[0]: chance[1]}
        text = (f"## Real-noise test (`{self.real_noise_dir}`)\n\nReal recorded backgrounds (North Sea ambient, "
                "Orcasound) and hard negatives (killer whale calls, a dolphin whistle, Risso's, dolphin, beaked and "
                "sperm whale clicks), real porpoise click trains embedded at known times; no beluga audio exists, so "
                "whistle and beluga-click labels are 0 throughout. The interval resamples the independent real "
                "source files of the backgrounds (sources), not the stretches cut from them. FA: the share of the "
                "noise-only windows (no target sound at all) in which the model flags the type, over all of them "
                "and per background kind. Recall at precision 0.9 uses the best threshold on this set (an "
                "optimistic bound); the operating point is the model's own decision. " + CAVEAT +
                " docs/real_noise.md says how the set is made.\n\n"
                + table([*(record["row"] for record in records.values()), chance]))
        return rows, text + (self._deployed_text(deployed) if deployed else "")

    @staticmethod
    def _deployed_text(deployed: dict[str, dict]) -> str:
        from ..evaluate.real_noise import DEPLOYED_HEADER, table

        return ("\n\n### Deployed operating points (calibrated on validation windows, P 0.9)\n\nEach model as a user "
                "would deploy it: exported with the segmenter into a bundle and calibrated as `mgc calibrate "
                "--target-precision 0.9` does, on the benchmark's validation windows (temperature scaling, Platt for a "
                "multi-label head; per type the lowest threshold whose validation precision reaches 0.9). The bundle "
                "scores every window of the set as `mgc detect` reads it and flags a type where its calibrated score "
                "reaches its threshold: no threshold is chosen on this set. FA as above, at those thresholds; no "
                "window holds a whistle or a beluga click, so their recall is not measurable. The bundles go to "
                "`mgc detect --model` as they are.\n\n"
                + table([row for record in deployed.values() for row in record["rows"]], DEPLOYED_HEADER) + "\n\n"
                + "\n".join(f"- {record['note']}" for record in deployed.values()))

    def headline(self, floors: dict[str, dict[str, str]] | None = None, real_noise: str = "") -> Headline | None:
        c = self.config.confirmation
        if c is None:
            return None
        return Headline(str(Path(c.data_dir) / "manifest.csv"),
                        f"The confirmation benchmark (`{c.data_dir}`): a second benchmark of the same generator "
                        f"settings with seed {c.seed} and deployments and sites of its own, every window tested, "
                        "no choice ever made on it. The main benchmark's test split, on which earlier choices were "
                        "made, is a development test below.", floors or {}, real_noise)

    def mask_quality(self, manifest: Path, confirmation: Path | None, degraded: dict[str, float]) -> dict:
        """Per mask source the classifiers read: its IoU against the exact masks and the labels its masks carry alone
        (read-out fitted on the train split), on the confirmation windows of the training front end: the axes of
        the mask-quality curve."""
        if confirmation is None:
            return {}
        rows, tested = load_manifest(manifest), load_manifest(confirmation)
        train = [rows[i] for i in split_rows(rows, self.config.split)["train"]]
        config = get_preset(self.config.presets[0])
        ious = {IDEAL: 1.0, PREDICTED: evaluate_masks(tested, config, self.config.cache_root, PREDICTED)["iou"],
                **degraded}
        return {source: MaskQuality(iou, label_readout(train, tested, config, self.config.cache_root, source))
                for source, iou in ious.items()}

    def panel(self, manifest: Path) -> tuple:
        """Three test windows with calls: spectrogram, high-quality (ideal) mask, predicted mask, soft version."""
        config = get_preset(self.config.presets[0])
        rows = load_manifest(manifest, check_audio=False)
        test = [rows[i] for i in split_rows(rows, self.config.split)["test"]]
        chosen = [r for r in test if r.porpoise_click or r.beluga_click][:3]
        images = spectrogram_store(config, self.config.cache_root)
        ideal = mask_store(config, "ideal", self.config.cache_root)
        predicted = mask_store(config, PREDICTED, self.config.cache_root)
        columns = {"spectrogram": [images.load(r.key).astype(np.float32) for r in chosen],
                   "high-quality mask": [ideal.load(r.key) for r in chosen],
                   "generated mask": [predicted.load(r.key) for r in chosen],
                   "soft mask (sigma 3)": [soft_mask(predicted.load(r.key), 3.0) for r in chosen]}
        titles = [f"{r.recording} {r.start_s:g}s" for r in chosen]
        return columns, titles

    def run(self) -> Path:
        with self._tracking():
            manifest = self.data()
            confirmation = self.confirmation_data()
            self.check_looks(["--config", self.config.segmenter_config, *self.config.segmenter_args.arguments()],
                             "the segmenter")
            segmenter = self.segmenter()
            self.predicted_masks(manifest, confirmation, segmenter)
            few_shot = self.few_shot_points(manifest, confirmation, segmenter)
            degraded = self.degraded_masks(manifest, confirmation)
            trained = self.classifiers(manifest)
            self.tests(trained, segmenter, confirmation)
            tested = self.real_noise_test(trained, segmenter)
            deployed = self.real_noise_calibrated(trained, segmenter, manifest, tested)
            real_rows, real_text = self.real_noise_section(tested, deployed)
            self.reported_headline = self.headline({**self.energy_detector(manifest, confirmation), **real_rows},
                                                   real_text)
            with self._timed("report"):
                return write_report(self.config.experiment, self.report_dir, self.config.presets[0],
                                    panel=self.panel(manifest),
                                    segmenter_windows=self._done("split")["segmenter_windows"],
                                    headline=self.reported_headline, few_shot=few_shot,
                                    mask_quality=self.mask_quality(manifest, confirmation, degraded))
