"""The whole protocol on a tiny benchmark: every stage, OOD evaluation in runs linked to the training runs, the
report, and a rerun that skips everything finished."""

import re
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from mgc_lightning.cli import main
from mgc_lightning.evaluation import evaluate_checkpoint
from mgc_lightning.pipeline import Pipeline, PipelineConfig
from mgc_lightning.report import collect_runs
from mgc_lightning.tracking import EVALUATES_TAG

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
QUICK = ["--trainer.max_epochs", 1, "--trainer.limit_train_batches", 2, "--trainer.enable_progress_bar", "false"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    settings = {
        "name": "tiny", "data_dir": str(root / "bench"), "windows": 96, "workers": 1,
        "cache_root": str(root / "cache"), "presets": ["origin", "mel"], "hq_count": 16,
        "segmenter_config": str(EXPERIMENTS / "seg_unet.yaml"), "segmenter_args": QUICK,
        "classifier_base": str(EXPERIMENTS / "classifier_base.yaml"),
        "classifier_args": QUICK + ["--data.init_args.batch_size", 8],
        "classifiers": [{"name": "base", "configs": [str(EXPERIMENTS / "baseline_resnet18.yaml")]},
                        {"name": "xattn", "configs": [str(EXPERIMENTS / "mgc_xattn_soft.yaml")]}],
        "experiment": "tiny", "report_dir": str(root / "report"),
    }
    (root / "pipeline.yaml").write_text(yaml.safe_dump(settings))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        patch.chdir(root)
        patch.setattr(sys, "argv", ["mgc"])
        assert main(["pipeline", str(root / "pipeline.yaml")]) == 0
        yield root


@pytest.mark.slow
def test_every_model_is_tested_on_origin_and_out_of_distribution(finished):
    runs = collect_runs("tiny", f"sqlite:///{finished / 'mlflow.db'}")
    assert sorted(r.model for r in runs) == ["MGC xattn soft (predicted, resnet18)", "baseline resnet18"]
    for run in runs:
        assert run.presets == ["mel", "origin"]
        assert 0 <= run.value("mel", "joint_acc") <= 1 and run.value("origin", "hamming") is not None
    client = MlflowClient(f"sqlite:///{finished / 'mlflow.db'}")
    segmentation = client.get_experiment_by_name("tiny-segmentation")
    assert len(client.search_runs([segmentation.experiment_id])) == 1


@pytest.mark.slow
def test_report_has_the_tables_and_figures(finished):
    report = (finished / "report" / "REPORT.md").read_text()
    for title in ("Table 1", "Table 2", "Table 3", "Table 4", "Figure 5", "Figure 8", "Figure 3"):
        assert title in report, title
    assert "| baseline resnet18 |" in report and "| origin | mel |" in report
    assert "Segmenter training windows per classifier split: train 16, val 0, test 0" in report
    # every joint accuracy of the headline carries its interval over the test windows, and MGC its paired difference
    headline = report.split("## Table 1")[0]
    assert re.search(r"\| MGC xattn soft \(predicted, resnet18\) \| \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\] "
                     r"\(\d+ windows, n=1\)", headline)
    assert re.search(r"\| -?\d\.\d{3} \[-?\d\.\d{3}, -?\d\.\d{3}\] \|$", headline, re.MULTILINE)
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
    assert len(training) == 2 and len(everything) == 4  # and one `mel` evaluation run of each
    record = yaml.safe_load((finished / "bench" / "pipeline" / "classifier-base-seed0.json").read_text())
    before = client.get_run(record["run_id"])
    evaluation = evaluate_checkpoint(record["best"], "pcen")  # a third preset, straight from the checkpoint
    assert "test/pcen/joint_acc" in evaluation.metrics
    assert "test/pcen/joint_acc" in client.get_run(evaluation.run_id).data.metrics
    assert client.get_run(evaluation.run_id).data.tags[EVALUATES_TAG] == record["run_id"]
    assert client.get_run(record["run_id"]).data.metrics == before.data.metrics  # the training run is untouched
    assert "pcen" in next(r for r in collect_runs("tiny", f"sqlite:///{finished / 'mlflow.db'}")
                          if r.run_id == record["run_id"]).presets
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
