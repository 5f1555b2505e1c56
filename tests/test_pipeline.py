"""The whole protocol on a tiny benchmark with a confirmation benchmark: every stage, tests on every front end of
the confirmation benchmark in runs linked to the training runs, the report with its headline there, and a rerun that
skips everything finished."""

import re
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from mgc_lightning.audio.manifest import load_manifest, split_rows
from mgc_lightning.cli import main
from mgc_lightning.evaluate.ood import evaluate_checkpoint
from mgc_lightning.pipeline.config import PipelineConfig
from mgc_lightning.pipeline.stages import Pipeline
from mgc_lightning.report.comparison import collect_runs
from mgc_lightning.train.tracking import EVALUATES_TAG

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
QUICK = ["--trainer.max_epochs", 1, "--trainer.limit_train_batches", 2, "--trainer.enable_progress_bar", "false"]
# The U-Net of seg_unet.yaml on timm's smallest MobileNetV3 with a narrow decoder: the segmenter draws masks for every
# stage (predicted masks, each few-shot point's IoU, the uncertainty ranking) several times faster than on ResNet-18.
TINY_SEGMENTER = ["--model.init_args.encoder_name", "tu-mobilenetv3_small_050",
                  "--model.init_args.network_kwargs", "{decoder_channels: [16, 8, 8, 8, 8]}"]
# the classifiers of the demo (pipeline_demo.yaml): the narrow ResNet-18, named in the report with its settings
NARROW = EXPERIMENTS / "narrow_resnet18.yaml"
RESNET = "resnet18 (channels=[16, 32, 64, 128], stem_width=16)"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    settings = {
        # recordings of 12 windows (the demo's have 24): 4 in the benchmark, 2 in the confirmation benchmark
        "name": "tiny", "data_dir": str(root / "bench"), "windows": 48, "windows_per_recording": 12, "workers": 1,
        "cache_root": str(root / "cache"), "presets": ["origin", "mel"], "hq_count": 16,
        "segmenter_config": str(EXPERIMENTS / "seg_unet.yaml"), "segmenter_args": QUICK + TINY_SEGMENTER,
        "classifier_base": str(EXPERIMENTS / "classifier_base.yaml"),
        "classifier_args": QUICK + ["--data.init_args.batch_size", 8],
        "classifiers": [{"name": "base", "configs": [str(NARROW), str(EXPERIMENTS / "baseline_resnet18.yaml")]},
                        {"name": "xattn", "configs": [str(NARROW), str(EXPERIMENTS / "mgc_xattn_soft.yaml")]}],
        "experiment": "tiny", "report_dir": str(root / "report"),
        "confirmation": {"data_dir": str(root / "confirm"), "seed": 1, "windows": 24},
        "few_shot_curve": [8, 16],
    }
    (root / "pipeline.yaml").write_text(yaml.safe_dump(settings))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        patch.chdir(root)
        patch.setattr(sys, "argv", ["mgc"])
        assert main(["pipeline", str(root / "pipeline.yaml"), "--few-shot-curve"]) == 0
        yield root


@pytest.mark.slow
def test_every_model_is_tested_on_the_development_test_and_on_every_front_end_of_the_confirmation_benchmark(finished):
    runs = collect_runs("tiny", f"sqlite:///{finished / 'mlflow.db'}")
    models = [f"MGC xattn soft (predicted, {RESNET}) [image head 1.0]", f"baseline {RESNET}"]  # the overlay's head
    confirmation = str((finished / "confirm" / "manifest.csv").resolve())
    development = [r for r in runs if r.dataset != confirmation]
    confirmed = [r for r in runs if r.dataset == confirmation]
    assert sorted(r.model for r in development) == sorted(r.model for r in confirmed) == models
    assert all(r.presets == ["origin"] for r in development)  # the development test: training front end only
    recordings = {row.recording for row in load_manifest(finished / "confirm" / "manifest.csv")}
    assert len(recordings) == 2 and all(name.startswith("C0") for name in recordings)
    for run in confirmed:
        assert run.presets == ["mel", "origin"] and run.value("origin", "hamming") is not None
        for preset in ("mel", "origin"):  # every window of the confirmation benchmark, named by its recording
            assert {key[0] for key in run.windows[preset].keys} == recordings
            assert len(run.windows[preset].keys) == 24
            assert run.value(preset, "joint_acc") == pytest.approx(run.windows[preset].correct.mean())
    client = MlflowClient(f"sqlite:///{finished / 'mlflow.db'}")
    segmentation = client.get_experiment_by_name("tiny-segmentation")
    # the pipeline's segmenter and the few-shot curve's two others (random 8; uncertain 16)
    assert len(client.search_runs([segmentation.experiment_id])) == 3


@pytest.mark.slow
def test_few_shot_curve_grows_by_uncertainty_reuses_equal_segmenters_and_reports_recording_intervals(finished):
    from mgc_lightning.core.checkpoints import load_module
    from mgc_lightning.evaluate.few_shot import mask_overlaps
    from mgc_lightning.frontend.spectrogram import get_preset
    from mgc_lightning.masks.sources import rank_by_uncertainty
    from mgc_lightning.models.segmenter import SegmenterModule

    state = finished / "bench" / "pipeline"
    point = {name: yaml.safe_load((state / f"few-shot-{name}.json").read_text())
             for name in ("random-8", "random-16", "uncertain-8", "uncertain-16")}
    windows = {name: [row.key for row in load_manifest(record["windows"], check_audio=False)]
               for name, record in point.items()}
    hq = [row.key for row in load_manifest(finished / "bench" / "hq.csv", check_audio=False)]
    assert windows["random-16"] == hq and windows["random-8"] == hq[:8] == windows["uncertain-8"]
    # equal windows and recipe: the pipeline's segmenter and the random draw's, not trained again
    assert point["random-16"]["best"] == yaml.safe_load((state / "segmenter.json").read_text())["best"]
    assert point["uncertain-8"]["best"] == point["random-8"]["best"]
    assert point["random-8"]["epochs"] == 2 and point["uncertain-16"]["epochs"] == 1  # about equal steps
    # the uncertain round adds the train-side windows the round before's segmenter was least sure of
    rows = load_manifest(finished / "bench" / "manifest.csv")
    train = [rows[i] for i in split_rows(rows, PipelineConfig.from_yaml(finished / "pipeline.yaml").split)["train"]]
    before = load_module(SegmenterModule, point["random-8"]["best"], "segmenter").eval()
    pool = [row for row in train if row.key not in set(hq[:8])]
    ranked = rank_by_uncertainty(before, pool, get_preset("origin"), finished / "cache")
    assert windows["uncertain-16"] == hq[:8] + [row.key for row in ranked[:8]]
    assert windows["uncertain-16"] != hq
    # each point's IoU is the pooled IoU of its segmenter's masks, with an interval over the 2 recordings
    trained = load_module(SegmenterModule, point["uncertain-16"]["best"], "segmenter").eval()
    confirmation = load_manifest(finished / "confirm" / "manifest.csv")
    overlaps = mask_overlaps(trained, confirmation, get_preset("mel"), finished / "cache")
    recorded = point["uncertain-16"]["iou"]["confirmation mel"]
    assert recorded["estimate"] == pytest.approx(overlaps.intersection.sum() / overlaps.union.sum())
    assert recorded["low"] <= recorded["estimate"] <= recorded["high"] and recorded["groups"] == 2
    assert set(point["random-8"]["iou"]) == {"validation origin", "confirmation origin", "confirmation mel"}
    report = (finished / "report" / "REPORT.md").read_text()
    section = report.split("## Few-shot curve")[1].split("\n## ")[0]
    assert re.search(r"^\| 8 \| \d\.\d{3} \[", section, re.MULTILINE) and re.search(r"^\| 16 \| ", section, re.MULTILINE)
    assert "uncertain: confirmation mel" in section
    assert (finished / "report" / "figures" / "few_shot_curve.png").is_file()
    # points made with another segmenter are stale: refused when the curve is asked for, left out of a plain rerun
    config = PipelineConfig.from_yaml(finished / "pipeline.yaml")
    manifest, confirm = finished / "bench" / "manifest.csv", finished / "confirm" / "manifest.csv"
    segmenter = yaml.safe_load((state / "segmenter.json").read_text())
    with pytest.raises(ValueError, match=r"delete .*few-shot-\*\.json"):
        Pipeline(config, few_shot_curve=True).few_shot_points(manifest, confirm, {**segmenter, "best": "other.ckpt"})
    assert Pipeline(config).few_shot_points(manifest, confirm, {**segmenter, "best": "other.ckpt"}) == []
    assert len(Pipeline(config).few_shot_points(manifest, confirm, segmenter)) == 4


@pytest.mark.slow
def test_report_has_the_tables_and_figures(finished):
    report = (finished / "report" / "REPORT.md").read_text()
    for title in ("Table 1", "Table 2", "Table 3", "Table 4", "Figure 5", "Figure 8", "Figure 3"):
        assert title in report, title
    assert f"| baseline {RESNET} |" in report and "| origin | mel |" in report
    assert "Segmenter training windows per classifier split: train 16, val 0, test 0" in report
    # the headline is the confirmation benchmark's; every joint accuracy carries its interval over recordings, and
    # MGC its paired difference to its own baseline; the development test follows
    headline, development = report.split("## Tables on")[0].split("## Development test: bench")
    assert "## Headline: confirm" in headline and "confirmation benchmark" in headline
    assert re.search(re.escape(f"| MGC xattn soft (predicted, {RESNET}) [image head 1.0] | ") +
                     r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\] "
                     r"\(2 rec\., 24 win\., n=1\)", headline)
    assert re.search(r"\| -?\d\.\d{3} \[-?\d\.\d{3}, -?\d\.\d{3}\] \|$", headline, re.MULTILINE)
    assert "| chance: always the majority class |" in headline and "OOD drop / own baseline's" in headline
    assert "origin (training front end)" in development and "(OOD)" not in development
    figures = {p.name for p in (finished / "report" / "figures").iterdir()}
    assert {"ood_joint_accuracy.png", "masks_panel.png"} <= figures
    assert sum(name.startswith("confusion_") for name in figures) == 2
    client = MlflowClient(f"sqlite:///{finished / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    report_runs = [r for r in client.search_runs([experiment.experiment_id]) if r.info.run_name == "report"]
    assert {a.path for a in client.list_artifacts(report_runs[0].info.run_id, "figures")} >= {
        "figures/ood_joint_accuracy.png"}


@pytest.mark.slow
def test_rerun_skips_finished_stages_and_evaluate_logs_into_the_training_run(finished, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{finished / 'mlflow.db'}")
    monkeypatch.chdir(finished)
    config = PipelineConfig.from_yaml(finished / "pipeline.yaml")
    said = []
    Pipeline(config, say=said.append).run()
    assert said == []  # nothing trained or evaluated again
    client = MlflowClient(f"sqlite:///{finished / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    everything = [r for r in client.search_runs([experiment.experiment_id]) if r.info.run_name != "report"]
    training = [r for r in everything if EVALUATES_TAG not in r.data.tags]
    assert len(training) == 2 and len(everything) == 6  # and an origin and a mel test of each on the confirmation
    record = yaml.safe_load((finished / "bench" / "pipeline" / "classifier-base-seed0.json").read_text())
    before = client.get_run(record["run_id"])
    evaluation = evaluate_checkpoint(record["best"], "pcen")  # a third preset, straight from the checkpoint
    assert "test/pcen/joint_acc" in evaluation.metrics
    assert "test/pcen/joint_acc" in client.get_run(evaluation.run_id).data.metrics
    assert client.get_run(evaluation.run_id).data.tags[EVALUATES_TAG] == record["run_id"]
    assert client.get_run(record["run_id"]).data.metrics == before.data.metrics  # the training run is untouched
    assert "pcen" in next(r for r in collect_runs("tiny", f"sqlite:///{finished / 'mlflow.db'}")
                          if r.run_id == record["run_id"] and r.dataset == r.trained_on).presets
    with pytest.raises(ValueError, match="pass the segmenter checkpoint"):
        xattn = yaml.safe_load((finished / "bench" / "pipeline" / "classifier-xattn-seed0.json").read_text())
        evaluate_checkpoint(xattn["best"], "pcen")


def test_pipeline_config_is_validated(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "data_dir": "d", "classifiers": [], "epochs": 3}))
    with pytest.raises(ValueError, match=r"unknown pipeline setting\(s\) \['epochs'\]"):
        PipelineConfig.from_yaml(path)
    path.write_text(yaml.safe_dump({"name": "x", "data_dir": "d", "classifiers": [{"configs": []}]}))
    with pytest.raises(ValueError, match="each classifier needs a name"):
        PipelineConfig.from_yaml(path)
    path.write_text(yaml.safe_dump({"name": "x", "data_dir": "d", "presets": ["origin", "cqt"],
                                    "classifiers": [{"name": "a", "configs": []}]}))
    with pytest.raises(ValueError, match="unknown front-end preset 'cqt'"):
        PipelineConfig.from_yaml(path)


@pytest.mark.parametrize("where, options, key", [
    ("classifier_args", ["--trainer.max_epochs", 2, "--data.init_args.split_by", "site"], "data.init_args.split_by"),
    ("classifier 'a' args", ["--data.split_seed=3"], "data.split_seed"),
    ("classifier 'a' args", ["--data.init_args.split_fractions", "[0.5, 0.25, 0.25]"],
     "data.init_args.split_fractions"),
])
def test_a_classifier_split_override_is_refused_by_its_key_naming_the_yaml(where, options, key, tmp_path):
    path = tmp_path / "split.yaml"
    classifier = {"name": "a", "configs": [], **({"args": options} if where != "classifier_args" else {})}
    path.write_text(yaml.safe_dump({"name": "x", "data_dir": "d", "classifiers": [classifier],
                                    **({"classifier_args": options} if where == "classifier_args" else {})}))
    with pytest.raises(ValueError, match=re.escape(f"{path}: {where}: {key} would split the windows")):
        PipelineConfig.from_yaml(path)


@pytest.mark.parametrize("setting, options, message", [
    ("classifier_args", [15, "--trainer.max_epochs"], "classifier_args: '15' is no --dotted.key option"),
    ("classifier_args", ["--trainer.max_epochs"], "classifier_args: --trainer.max_epochs has no value"),
    ("segmenter_args", ["--trainer.max_epochs", "--trainer.fast_dev_run", 1], "--trainer.max_epochs has no value"),
    ("segmenter_args", ["--trainer..max_epochs", 1], "'--trainer..max_epochs' is no --dotted.key option"),
    ("segmenter_args", "--trainer.max_epochs 3", "segmenter_args must be a list"),
    ("args", ["trainer.max_epochs", 3], "classifier 'a' args: 'trainer.max_epochs' is no --dotted.key option"),
    ("args", "--trainer.max_epochs", "classifier 'a' args must be a list"),
])
def test_malformed_overrides_are_refused_when_the_yaml_loads(setting, options, message, tmp_path):
    path = tmp_path / "bad.yaml"
    classifier = {"name": "a", "configs": [], **({"args": options} if setting == "args" else {})}
    path.write_text(yaml.safe_dump({"name": "x", "data_dir": "d", "classifiers": [classifier],
                                    **({setting: options} if setting != "args" else {})}))
    with pytest.raises(ValueError, match=re.escape(f"{path}: ") + ".*" + re.escape(message)):
        PipelineConfig.from_yaml(path)


def test_pipeline_refuses_looks_that_could_reproduce_a_tested_front_end(tmp_path):
    """A power-like curve up to PCEN's exponent could render a `pcen`-like image in training: `pcen` would then be
    no out-of-distribution test, so the pipeline refuses the fit before it starts, naming the look and the preset."""
    path = tmp_path / "looks.yaml"
    path.write_text(yaml.safe_dump({
        "name": "x", "data_dir": str(tmp_path / "d"), "presets": ["origin", "mel", "pcen"],
        "classifier_base": str(EXPERIMENTS / "classifier_base.yaml"),
        "classifiers": [{"name": "a", "configs": [str(EXPERIMENTS / "baseline_resnet18.yaml")],
                         "args": ["--data.init_args.power_probability", 0.5]}]}))
    pipeline = Pipeline(PipelineConfig.from_yaml(path))
    spec = pipeline.config.classifiers[0]
    args = ["--config", pipeline.config.classifier_base, "--config", spec.configs[0], *spec.args]
    with pytest.raises(ValueError, match=r"classifier a: its front-end looks \(intensity curve;.*'pcen'"):
        pipeline.check_looks(args, "classifier a")
    pipeline.check_looks(args[:4], "classifier a")  # the YAMLs' own settings (no looks) pass
    with pytest.raises(ValueError, match="intensity curve"):  # jsonargparse's spelling without init_args too
        pipeline.check_looks([*args[:4], "--data.power_probability=0.5"], "classifier a")
    with pytest.raises(ValueError, match="intensity curve"):  # refused before anything is trained
        pipeline.classifiers(tmp_path / "never-built.csv")
    pipeline.check_looks(["--config", str(EXPERIMENTS / "seg_unet.yaml")], "the segmenter")  # its looks keep clear


def test_the_curves_add_their_models_to_the_demo_and_the_perfect_segmenter_ends_the_mask_curve():
    config = PipelineConfig.from_yaml(EXPERIMENTS / "pipeline_demo.yaml")
    mgc = "mgc-xattn-soft-image-head"
    assert [spec.name for spec in Pipeline(config).specs()] == ["baseline-resnet18", mgc]
    specs = {spec.name: spec for spec in Pipeline(config, mask_curve=True, learning_curve=True).specs()}
    perfect = specs[f"{mgc}-perfect-segmenter"]
    assert perfect.args[-2:] == ("--data.init_args.mask_source", "ideal")
    assert {f"{mgc}-iou{iou:.2f}" for iou in config.mask_curve} <= set(specs)
    for size in (100, 300):
        for name in ("baseline-resnet18", mgc):
            assert specs[f"{name}-n{size}"].args[-2:] == ("--data.init_args.train_windows", str(size))
            assert specs[f"{name}-n{size}"].configs == specs[name].configs
    # every curve model of MGC keeps the demo's recipe (the narrow ResNet-18, the overlay with its image head)
    for name in (f"{mgc}-perfect-segmenter", f"{mgc}-iou0.50", f"{mgc}-n100"):
        assert specs[name].configs == specs[mgc].configs
    assert [Path(c).name for c in specs[mgc].configs] == ["narrow_resnet18.yaml", "mgc_xattn_soft.yaml"]


def test_learning_curve_settings_are_validated(tmp_path):
    path = tmp_path / "curve.yaml"
    base = {"name": "x", "data_dir": "d", "classifiers": [{"name": "a", "configs": []}]}
    for extra, message in (({"learning_curve": [100]}, "go together"),
                           ({"learning_curve": [100], "learning_curve_models": ["b"]}, r"unknown classifier\(s\): \['b'\]"),
                           ({"learning_curve": [7], "learning_curve_models": ["a"]}, "at least 8"),
                           ({"learning_curve": [100, 100], "learning_curve_models": ["a"]}, "must be distinct"),
                           ({"few_shot_curve": [50, 25]}, "increasing numbers of masks"),
                           ({"few_shot_curve": [1, 25]}, "at least 2")):
        path.write_text(yaml.safe_dump({**base, **extra}))
        with pytest.raises(ValueError, match=message):
            PipelineConfig.from_yaml(path)
