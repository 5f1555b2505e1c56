"""One split for every stage: the segmenter's high-quality (HQ) windows come from the classifier's train side only,
under any split setting, and the pipeline hands its one SplitConfig to HQ selection, the segmenter, every classifier
and the report. Nothing here trains or reads audio, except the CLI test's silent files."""

import inspect
import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import write_audio
from mgc_lightning.audio.manifest import (
    GROUP_COLUMNS, SplitConfig, WindowRow, load_manifest, split_rows, write_manifest,
)
from mgc_lightning.cli import main
from mgc_lightning.cli.entry import build_parser
from mgc_lightning.frontend.cache import mask_store
from mgc_lightning.frontend.spectrogram import get_preset
from mgc_lightning.masks.sources import select_high_quality
from mgc_lightning.pipeline.config import PipelineConfig
from mgc_lightning.pipeline.stages import Pipeline
from mgc_lightning.report.comparison import segmenter_windows_section

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
RECORDINGS, WINDOWS_PER_RECORDING, WINDOW_S, SAMPLE_RATE = 48, 6, 0.25, 8000
FRACTIONS = [(0.7, 0.15, 0.15), (0.5, 0.25, 0.25), (0.34, 0.33, 0.33), (0.8, 0.2, 0.0), (0.4, 0.0, 0.6)]


def survey_rows(folder: Path) -> list[WindowRow]:
    """48 recordings from 12 deployments on 4 sites over 4 seasons, 6 windows each, every joint class present."""
    labels = random.Random(0)
    rows = []
    for recording in range(RECORDINGS):
        for window in range(WINDOWS_PER_RECORDING):
            whistle, beluga_click, porpoise_click = (labels.randint(0, 1) for _ in range(3))
            rows.append(WindowRow(
                path=folder / f"rec{recording:02d}.wav", start_s=window * WINDOW_S, duration_s=WINDOW_S,
                whistle=whistle, beluga_click=beluga_click, porpoise_click=porpoise_click,
                recording=f"rec{recording:02d}", deployment=f"D{recording % 12:02d}", site=f"site{recording % 4}",
                season=f"season{recording // 4 % 4}"))
    return rows


def keys(rows, indices=None) -> set[tuple]:
    """Window identities (row.key would read the audio, which the split-only tests do not write)."""
    chosen = [rows[i] for i in indices] if indices is not None else rows
    return {row.span for row in chosen}


@pytest.mark.parametrize("seed", [0, 1, 13])
@pytest.mark.parametrize("fractions", FRACTIONS)
@pytest.mark.parametrize("group_by", GROUP_COLUMNS)
def test_high_quality_windows_come_from_the_train_side_only(group_by, fractions, seed):
    rows = survey_rows(Path("survey"))
    split = SplitConfig(group_by, fractions, seed)
    sides = split_rows(rows, split)
    everything = select_high_quality(rows, split, count=len(rows), seed=seed)
    assert keys(everything) == keys(rows, sides["train"])  # the whole train side, and nothing of val or test
    few = select_high_quality(rows, split, count=24, seed=seed)
    assert len(few) == 24 and keys(few) <= keys(rows, sides["train"])


def test_cli_split_defaults_are_the_classifier_data_module_defaults():
    from mgc_lightning.data.datamodules import ClassificationDataModule

    window_settings = inspect.signature(ClassificationDataModule.__mro__[1].__init__).parameters
    classifier = SplitConfig(window_settings["split_by"].default, tuple(window_settings["split_fractions"].default),
                             window_settings["split_seed"].default)
    for command in (["validate", "m.csv"], ["masks", "select", "m.csv", "--out", "hq.csv"],
                    ["masks", "evaluate", "m.csv", "--source", "predicted"],
                    ["masks", "degrade", "m.csv", "--iou", "0.7"]):
        args = build_parser().parse_args(command)
        assert SplitConfig(args.split_by, tuple(args.split_fractions), args.seed) == classifier, command
    assert PipelineConfig("p", "d", ()).split == classifier


@pytest.fixture(scope="module")
def survey(tmp_path_factory) -> tuple[Path, list[WindowRow]]:
    folder = tmp_path_factory.mktemp("survey")
    rows = survey_rows(folder)
    for path in sorted({row.path for row in rows}):
        write_audio(path, np.zeros(int(WINDOWS_PER_RECORDING * WINDOW_S * SAMPLE_RATE), np.float32), SAMPLE_RATE)
    write_manifest(rows, folder / "manifest.csv")
    return folder / "manifest.csv", rows


def test_cli_commands_use_the_split_they_are_given(survey, tmp_path, capsys):
    manifest, rows = survey
    options = ["--split-by", "site", "--split-fractions", "0.5", "0.25", "0.25", "--seed", "3"]
    sides = split_rows(rows, SplitConfig("site", (0.5, 0.25, 0.25), 3))
    assert main(["validate", str(manifest), *options]) == 0
    assert (f"split by site: train={len(sides['train'])}, val={len(sides['val'])}, test={len(sides['test'])}"
            in capsys.readouterr().out)
    assert main(["masks", "select", str(manifest), "--count", str(len(rows)), "--out", str(tmp_path / "hq.csv"),
                 *options]) == 0
    assert keys(load_manifest(tmp_path / "hq.csv", check_audio=False)) == keys(rows, sides["train"])
    for source in ("ideal", "candidate"):
        store = mask_store(get_preset("origin"), source, tmp_path / "cache")
        for row in rows:
            store.save(row.key, np.ones((2, 2), bool))
    capsys.readouterr()
    assert main(["masks", "evaluate", str(manifest), "--source", "candidate", "--split", "val",
                 "--cache-root", str(tmp_path / "cache"), *options]) == 0
    assert f"val split ({len(sides['val'])} windows)" in capsys.readouterr().out
    assert main(["validate", str(manifest), "--split-fractions", "0.5", "0.5", "0.5"]) == 2
    assert "fractions must be three non-negative numbers summing to 1" in capsys.readouterr().err


def pipeline_with(folder: Path, split: SplitConfig, /, **settings) -> Pipeline:
    """A pipeline read from YAML, as `mgc pipeline` reads it, with two classifiers and two seeds; `settings` override
    the YAML's keys (a raw `split` included)."""
    raw = {"name": "t", "data_dir": str(folder / "data"), "hq_count": 40, "seeds": [0, 1],
           "split": {"group_by": split.group_by, "fractions": list(split.fractions), "seed": split.seed},
           "segmenter_config": str(EXPERIMENTS / "seg_unet.yaml"),
           "classifier_base": str(EXPERIMENTS / "classifier_base.yaml"),
           "classifiers": [{"name": "base", "configs": [str(EXPERIMENTS / "baseline_resnet18.yaml")]},
                           {"name": "xattn", "configs": [str(EXPERIMENTS / "mgc_xattn_soft.yaml")],
                            "args": ["--data.init_args.mask_source", "ideal"]}], **settings}
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(raw))
    return Pipeline(PipelineConfig.from_yaml(folder / "pipeline.yaml"), say=lambda _: None)


def fit_arguments(pipeline: Pipeline, monkeypatch, manifest: Path) -> list[list[str]]:
    """The `mgc fit` arguments of the segmenter, then of every classifier, without training anything."""
    fits = []

    def fit(args: list[str]) -> dict:
        fits.append(args)
        return {"best": "best.ckpt", "last": "last.ckpt", "run_id": str(len(fits))}

    monkeypatch.setattr(pipeline, "_fit", fit)
    pipeline.segmenter()
    pipeline.classifiers(manifest)
    return fits


def data_settings(args: list[str]) -> dict[str, str]:
    """The data module settings a command line gives (the last value of a repeated option wins, as in jsonargparse)."""
    prefix = "--data.init_args."
    return {flag[len(prefix):]: value for flag, value in zip(args, args[1:]) if flag.startswith(prefix)}


@pytest.mark.parametrize("split", [SplitConfig("deployment", (0.6, 0.2, 0.2), 5),
                                   SplitConfig("season", (0.5, 0.25, 0.25), 2), SplitConfig()])
def test_pipeline_hands_its_one_split_to_every_stage(split, tmp_path, monkeypatch):
    rows = survey_rows(tmp_path / "survey")
    pipeline = pipeline_with(tmp_path, split)
    counts = pipeline.high_quality_set(rows)
    sides = split_rows(rows, split)
    hq = load_manifest(tmp_path / "data" / "hq.csv", check_audio=False)
    assert len(hq) == 40 and keys(hq) <= keys(rows, sides["train"])
    assert counts == {"train": 40, "val": 0, "test": 0}
    record = json.loads((tmp_path / "data" / "pipeline" / "split.json").read_text())
    assert record == {"settings": {"group_by": split.group_by, "fractions": list(split.fractions), "seed": split.seed},
                      "segmenter_windows": counts}
    segmenter, *classifiers = fit_arguments(pipeline, monkeypatch, tmp_path / "manifest.csv")
    assert len(classifiers) == 4  # two models x two seeds
    for args in classifiers:
        given = data_settings(args)
        assert SplitConfig(given["split_by"], tuple(json.loads(given["split_fractions"])),
                           int(given["split_seed"])) == split
    given = data_settings(segmenter)
    assert given["manifest"] == str(tmp_path / "data" / "hq.csv") and given["split_seed"] == str(split.seed)


def test_classifier_split_arguments_reach_the_data_module(tmp_path, monkeypatch, capsys):
    from mgc_lightning.train.lightning_cli import run_lightning

    split = SplitConfig("site", (0.5, 0.3, 0.2), 7)
    monkeypatch.setattr(sys, "argv", ["mgc"])  # LightningCLI would read pytest's arguments too
    _, classifier, *_ = fit_arguments(pipeline_with(tmp_path, split), monkeypatch, tmp_path / "manifest.csv")
    with pytest.raises(SystemExit):
        run_lightning(["fit", *classifier, "--print_config"])
    data = yaml.safe_load(capsys.readouterr().out)["data"]["init_args"]
    assert SplitConfig(data["split_by"], tuple(data["split_fractions"]), data["split_seed"]) == split


def test_pipeline_refuses_an_hq_set_or_records_from_another_split(tmp_path):
    rows = survey_rows(tmp_path / "survey")
    pipeline_with(tmp_path, SplitConfig(seed=0)).high_quality_set(rows)
    changed = pipeline_with(tmp_path, SplitConfig(seed=1))
    with pytest.raises(ValueError, match="holds stages made with split"):
        changed.high_quality_set(rows)
    (tmp_path / "data" / "pipeline" / "split.json").unlink()
    sides = split_rows(rows, changed.config.split)
    write_manifest([rows[sides["val"][0]], rows[sides["test"][0]]], tmp_path / "data" / "hq.csv")  # a stale hq.csv
    with pytest.raises(ValueError, match=r"hq.csv holds 1 validation and 1 test window\(s\)"):
        changed.high_quality_set(rows)


@pytest.mark.parametrize("settings, message", [
    ({"classifier_args": ["--data.init_args.split_by", "site"]}, "would split the windows differently"),
    ({"classifiers": [{"name": "a", "configs": [], "args": ["--data.split_seed=3"]}]}, "would split the windows"),
    ({"split": {"group_by": "sensor"}}, "group_by must be one of"),
    ({"split": {"fractions": [0.5, 0.5]}}, "fractions must be three"),
    ({"split": {"seeds": 1}}, "unexpected keyword argument 'seeds'"),
    ({"split": "recording"}, "split needs group_by, fractions"),
])
def test_pipeline_split_settings_are_validated(settings, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        pipeline_with(tmp_path, SplitConfig(), **settings)


def test_report_states_the_segmenter_windows_per_split():
    section = segmenter_windows_section({"train": 154, "val": 0, "test": 0})
    assert "Segmenter training windows per classifier split: train 154, val 0, test 0." in section
