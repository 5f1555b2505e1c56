"""`make paper` on a CPU at a tiny size: experiments/pipeline_paper.yaml itself (every model of Tables 1-4, every
stage) with only sizes made small and one OOD front end of its two (`pcen` takes the path `mel` takes, and
tests/test_pipeline.py tests every front end), so a borrowed GPU machine meets few surprises (what only CUDA switches
on, bf16 autocast, pinned batches, spectrograms on the GPU, is not exercised here).
Everything but the data must land in the one output folder, every run must finish, and a rerun must skip all."""

import json
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from mgc_lightning.cli import main
from mgc_lightning.pipeline.config import PipelineConfig
from mgc_lightning.pipeline.stages import Pipeline
from mgc_lightning.train.tracking import EVALUATES_TAG

ROOT = Path(__file__).resolve().parents[1]
# integers: "1" would parse as the float 1.0, i.e. every batch
QUICK = ["--trainer.max_epochs", 1, "--trainer.limit_train_batches", 1, "--trainer.limit_val_batches", 1,
         "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
# Each backbone family shrunk to a few thousand weights; the architecture (and its code path) stays the same.
TINY = {"resnet": "{layers: [1, 1, 1, 1], channels: [8, 16, 32, 64], stem_width: 8}",
        "convnext": "{depths: [1, 1, 1, 1], dims: [8, 16, 32, 64]}",
        "transformer": "{depth: 1, embed_dim: 32, num_heads: 2}"}


def tiny_backbone(spec: dict) -> list[str]:
    configs = " ".join(spec["configs"])
    family = ("convnext" if "convnext" in configs else
              "transformer" if "vit" in configs or "deit" in configs else "resnet")
    return ["--model.init_args.backbone_kwargs", TINY[family]]


def dry_run_config(root: Path) -> dict:
    """The paper's config with tiny sizes and folders under root; models, stages and presets unchanged."""
    settings = yaml.safe_load((ROOT / "experiments" / "pipeline_paper.yaml").read_text())
    for spec in settings["classifiers"]:
        spec["configs"] = [str(ROOT / path) for path in spec["configs"]]
        spec["args"] = [*spec.get("args", []), *tiny_backbone(spec)]
    settings.update(
        data_dir=str(root / "data" / "bench-paper"), cache_root=str(root / "data" / "cache"),
        output_dir=str(root / "runs" / "paper"), windows=32, windows_per_recording=4, hq_count=8,
        presets=settings["presets"][:2],
        segmenter_config=str(ROOT / settings["segmenter_config"]),
        segmenter_args=[*settings["segmenter_args"], *QUICK, "--data.init_args.num_workers", 0],
        classifier_base=str(ROOT / settings["classifier_base"]),
        classifier_args=[*settings["classifier_args"], *QUICK, "--data.init_args.batch_size", 4,
                         "--data.init_args.num_workers", 0, "--model.init_args.dim", 32],
    )
    return settings


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    (root / "work").mkdir()
    (root / "pipeline_paper.yaml").write_text(yaml.safe_dump(dry_run_config(root)))
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.chdir(root / "work")  # nothing may land in the working directory
        patch.setattr(sys, "argv", ["mgc"])
        assert main(["pipeline", str(root / "pipeline_paper.yaml")]) == 0
        yield root


@pytest.mark.slow
def test_every_paper_model_lands_finished_in_the_one_output_folder(dry_run):
    out = dry_run / "runs" / "paper"
    assert not list((dry_run / "work").iterdir()), "something was written outside the output folder"
    # .mlflow.db.lock: the empty file processes that open a new store together take turns on (train/tracking.py)
    assert {p.name for p in out.iterdir()} == {"mlflow.db", ".mlflow.db.lock", "mlartifacts", "checkpoints", "pipeline",
                                               "report", "stage_times.json"}
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    paper = client.get_experiment_by_name("paper")
    assert paper.artifact_location == (out / "mlartifacts").as_uri()
    runs = client.search_runs([paper.experiment_id], max_results=1000)
    training = [r for r in runs if EVALUATES_TAG not in r.data.tags and r.info.run_name != "report"]
    evaluations = [r for r in runs if EVALUATES_TAG in r.data.tags]
    specs = yaml.safe_load((ROOT / "experiments" / "pipeline_paper.yaml").read_text())["classifiers"]
    assert sorted(r.info.run_name for r in training) == sorted(f"{s['name']}-seed0" for s in specs)
    assert len(evaluations) == len(specs)  # mel for every model
    assert {r.info.status for r in runs} == {"FINISHED"}
    for run in training:
        assert "test/origin/joint_acc" in run.data.metrics
        assert Path(run.data.tags["checkpoint/best"]).is_relative_to(out / "checkpoints")
    segmentation = client.get_experiment_by_name("paper-segmentation")
    assert [r.info.status for r in client.search_runs([segmentation.experiment_id])] == ["FINISHED"]
    report = (out / "report" / "REPORT.md").read_text()
    for title in ("Table 1", "Table 2", "Table 3", "Table 4"):
        assert title in report, title
    rows = [line for line in report.split("# Tables on")[0].splitlines() if line.startswith("| ")]
    assert any(line.startswith("| MGC xattn soft (perfect segmenter: masks reveal the labels by construction, resnet50")
               for line in rows)
    assert any(line.startswith("| baseline deit_base_distilled_patch16_224") for line in rows)
    # four baselines: every ResNet-50 MGC model is paired with the ResNet-50 one, none left without its baseline
    assert not any("no baseline of this backbone and head" in line for line in rows if "resnet50" in line)


@pytest.mark.slow
def test_stage_times_are_recorded_and_a_rerun_skips_every_stage(dry_run, monkeypatch, capsys):
    times_file = dry_run / "runs" / "paper" / "stage_times.json"
    times = json.loads(times_file.read_text())
    stages = ["synth", *(f"{kind}-{preset}" for preset in ("origin", "mel") for kind in ("spectrograms", "ideal-masks")),
              "segmenter", *(f"predicted-masks-{p}" for p in ("origin", "mel")), "ood-evaluation", "report"]
    assert set(stages) <= set(times)
    assert sum(key.startswith("classifier-") for key in times) == 15
    assert all(entry["seconds"] > 0 and entry["device"] == "cpu" for entry in times.values())
    monkeypatch.chdir(dry_run / "work")
    said = []
    Pipeline(PipelineConfig.from_yaml(dry_run / "pipeline_paper.yaml"), say=said.append).run()
    assert said == []  # nothing trained or evaluated again
    again = json.loads(times_file.read_text())
    assert {k: v for k, v in again.items() if k != "report"} == {k: v for k, v in times.items() if k != "report"}
