"""Boxes that bound their calls: per-type ideal masks, a typed segmenter, Raven boxes drawn from each type's own mask,
and box-level precision and recall (time-frequency IoU)."""

import csv
import re
import shutil
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import small_benchmark, tiny_bundle, write_audio
from mgc_lightning.audio.manifest import write_manifest
from mgc_lightning.cli import main
from mgc_lightning.core.labels import SOUND_TYPES
from mgc_lightning.data.datamodules import ClassificationDataModule, SegmentationDataModule
from mgc_lightning.deploy.bundle import load_bundle, save_bundle, self_contained
from mgc_lightning.deploy.detect import (
    RAVEN_HEADER, TYPED_COLUMNS, WINDOW_HEADER, DetectSettings, detect, selections, window_header,
)
from mgc_lightning.deploy.detection_folder import csv_bytes, output_name
from mgc_lightning.deploy.inference import BundlePipeline
from mgc_lightning.evaluate.event_scores import box_iou, box_scores
from mgc_lightning.frontend.cache import mask_store, spectrogram_store
from mgc_lightning.frontend.spectrogram import get_preset
from mgc_lightning.masks.predict import predict_masks
from mgc_lightning.masks.sources import PREDICTED, PREDICTED_TYPED
from mgc_lightning.models.segmenter import SegmenterModule, load_segmenter
from mgc_lightning.synth.build import (
    TYPED_IDEAL_SOURCE, add_typed_stems, target_stem_path, typed_stem_path, write_typed_ideal_masks,
)
from mgc_lightning.synth.events import read_events

ORIGIN = get_preset("origin")
TINY_SEGMENTER = dict(architecture="Unet", encoder_name="tu-mobilenetv3_small_050",
                      network_kwargs={"encoder_depth": 3, "decoder_channels": [16, 8, 8]})


@pytest.fixture(scope="module")
def typed_bench(tmp_path_factory):
    """24 windows over 3 deployments (every sound type, alone and together) with ideal and per-type ideal masks."""
    root = tmp_path_factory.mktemp("typed")
    rows = small_benchmark(root, windows=24, per_recording=8, deployments=3, seed=0)
    write_typed_ideal_masks(rows, ORIGIN, root / "cache", progress=False)
    return root, rows


def _pixel_boxes(events: list[dict], row) -> np.ndarray:
    """Pixels of the origin grid within one pixel of a call's box in the row's window: its times, and its band
    widened by its width on each side (events.csv gives a click's -3 dB band, which a loud click's pixels outgrow)
    and a whistle's harmonics (events.csv gives its fundamental's band)."""
    inside = np.zeros((ORIGIN.height, ORIGIN.width), dtype=bool)
    edges = np.linspace(row.start_s, row.start_s + row.duration_s, ORIGIN.width + 1)
    for event in events:
        columns = (edges[:-1] < float(event["end_s"])) & (edges[1:] > float(event["start_s"]))
        low, high = float(event["low_hz"]), float(event["high_hz"]) * event["params"].get("harmonics", 1)
        inside |= ORIGIN.rows_in_band(2 * low - high, 2 * high - low)[:, None] & columns[None, :]
    grown = inside.copy()  # one pixel of leakage around the box
    grown[1:] |= inside[:-1]
    grown[:-1] |= inside[1:]
    grown[:, 1:] |= grown[:, :-1].copy()
    grown[:, :-1] |= grown[:, 1:].copy()
    return grown


@pytest.mark.slow
def test_typed_ideal_masks_are_the_ideal_mask_split_by_sound_type(typed_bench):
    """Each channel covers only its own type's calls; their union is the `ideal` mask, exactly wherever one type is
    present, and all but a few pixels where calls of two types meet (there the power of their sum decides)."""
    root, rows = typed_bench
    ideal, typed = (mask_store(ORIGIN, source, root / "cache") for source in ("ideal", TYPED_IDEAL_SOURCE))
    events = read_events(root / "bench")
    differ = total = 0
    outside = {sound_type: [0, 0] for sound_type in SOUND_TYPES}  # pixels off the type's calls' boxes, all pixels
    for row in rows:
        masks = typed.load(row.key)
        assert masks.shape == (len(SOUND_TYPES), ORIGIN.height, ORIGIN.width) and masks.dtype == bool
        union = masks.any(axis=0)
        if sum(row.labels) <= 1:
            assert np.array_equal(union, ideal.load(row.key)), row.key
        differ, total = differ + int((union != ideal.load(row.key)).sum()), total + int(ideal.load(row.key).sum())
        for t, sound_type in enumerate(SOUND_TYPES):
            if not row.labels[t]:
                assert not masks[t].any(), (row.key, sound_type)
                continue
            calls = [e for e in events if e["recording"] == row.recording and e["sound_type"] == sound_type
                     and int(e["window"]) == round(row.start_s / row.duration_s)]
            assert masks[t].any(), (row.key, sound_type)
            outside[sound_type][0] += int((masks[t] & ~_pixel_boxes(calls, row)).sum())
            outside[sound_type][1] += int(masks[t].sum())
    assert total > 2000 and differ <= 0.005 * total
    assert all(off <= 0.05 * pixels for off, pixels in outside.values()), outside


@pytest.mark.slow
def test_typed_stems_of_an_older_benchmark_are_rendered_again_as_built(typed_bench):
    """`mgc masks ideal --typed` on a benchmark missing a typed stem (as one built before they were kept) renders it
    again from benchmark.json, byte for byte, and writes the masks it lacks."""
    root, rows = typed_bench
    stem = typed_stem_path(rows[0].path, "whistle")
    store = mask_store(ORIGIN, TYPED_IDEAL_SOURCE, root / "cache")
    before, mask = stem.read_bytes(), store.load(rows[0].key)
    stem.unlink()
    store.path_for(rows[0].key).unlink()
    assert main(["masks", "ideal", str(root / "bench" / "manifest.csv"), "--typed", "--cache-root",
                 str(root / "cache"), "--quiet"]) == 0
    assert stem.read_bytes() == before and np.array_equal(store.load(rows[0].key), mask)
    assert add_typed_stems(root / "bench", progress=False) == 0

    # a target stem the generator no longer renders (it changed since the build): refused, nothing written
    target = target_stem_path(rows[0].path)
    kept = target.read_bytes()
    samples, rate = sf.read(str(target), dtype="float32")
    sf.write(str(target), samples * 0.5, rate, subtype="PCM_24", format="FLAC")
    stem.unlink()
    try:
        with pytest.raises(ValueError, match=f"{re.escape(str(target))}: rendering .* no longer gives this target"):
            add_typed_stems(root / "bench", progress=False)
        assert not stem.exists()
    finally:
        target.write_bytes(kept)
        stem.write_bytes(before)


def _iou(predicted: np.ndarray, truth: np.ndarray) -> list[float]:
    return [float((predicted[:, t] & truth[:, t]).sum() / max((predicted[:, t] | truth[:, t]).sum(), 1))
            for t in range(len(SOUND_TYPES))]


@pytest.fixture(scope="module")
def typed_segmenter(typed_bench):
    """A tiny typed U-Net fitted for 20 epochs (120 steps) on the benchmark's 24 windows, their masks predicted."""
    root, rows = typed_bench
    write_manifest(rows, root / "all.csv")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        L.seed_everything(0)
        data = SegmentationDataModule(str(root / "all.csv"), mask_source=TYPED_IDEAL_SOURCE,
                                      cache_root=str(root / "cache"), batch_size=4, split_fractions=(1.0, 0.0, 0.0),
                                      hflip=False)
        model = SegmenterModule(typed=True, lr=0.01, dice_weight=1.0, **TINY_SEGMENTER)
        trainer = L.Trainer(max_epochs=20, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            limit_val_batches=0, enable_model_summary=False)
        untrained = root / "untrained.ckpt"
        trainer.strategy.connect(model)
        trainer.save_checkpoint(untrained)
        trainer.fit(model, data)
        checkpoint = root / "typed.ckpt"
        trainer.save_checkpoint(checkpoint)
        predict_masks(load_segmenter(untrained), untrained, rows, ORIGIN, root / "cache", progress=False)
        truth = np.stack([mask_store(ORIGIN, TYPED_IDEAL_SOURCE, root / "cache").load(r.key) for r in rows])
        before = _iou(np.stack([mask_store(ORIGIN, PREDICTED_TYPED, root / "cache").load(r.key) for r in rows]), truth)
        predict_masks(load_segmenter(checkpoint), checkpoint, rows, ORIGIN, root / "cache", replace=True,
                      progress=False)
    finally:
        torch.set_num_threads(threads)
    return checkpoint, before, truth


@pytest.mark.slow
def test_a_typed_segmenter_learns_each_types_mask_and_its_union_is_the_classifiers(typed_bench, typed_segmenter,
                                                                                   one_thread):
    root, rows = typed_bench
    checkpoint, before, truth = typed_segmenter
    typed = np.stack([mask_store(ORIGIN, PREDICTED_TYPED, root / "cache").load(r.key) for r in rows])
    after = _iou(typed, truth)
    assert max(before) < 0.1 and min(after) > 0.25, (before, after)
    union = np.stack([mask_store(ORIGIN, PREDICTED, root / "cache").load(r.key) for r in rows])
    assert np.array_equal(union, typed.any(axis=1))
    # a mask-guided classifier in a bundle with this segmenter reads the union
    segmenter = SegmenterModule.load_from_checkpoint(checkpoint, map_location="cpu")
    bundle_path = tiny_bundle(root / "typed.mgc", mask_input="binary")
    bundle, _ = load_bundle(bundle_path)
    bundle.segmenter, bundle.segmenter_state = self_contained(segmenter.hparams), segmenter.state_dict()
    pipeline = BundlePipeline(bundle)
    images = torch.from_numpy(np.stack([spectrogram_store(ORIGIN, root / "cache").load(r.key) for r in rows[:8]])
                              .astype(np.float32))[:, None]
    maps = pipeline.masks(images)
    assert maps.shape == (8, len(SOUND_TYPES), ORIGIN.height, ORIGIN.width)
    assert torch.equal(pipeline.classifier_mask(maps)[:, 0].bool(), torch.from_numpy(union[:8]))


@pytest.mark.slow
def test_an_untyped_segmenter_replacing_a_typed_ones_masks_leaves_none_of_its_typed_masks(typed_bench, typed_segmenter,
                                                                                          tmp_path, one_thread):
    root, rows = typed_bench
    cache = shutil.copytree(root / "cache", tmp_path / "cache")
    assert all(mask_store(ORIGIN, PREDICTED_TYPED, cache).has(r.key) for r in rows)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.strategy.connect(SegmenterModule(**TINY_SEGMENTER))
    untyped = tmp_path / "untyped.ckpt"
    trainer.save_checkpoint(untyped)
    predict_masks(load_segmenter(untyped), untyped, rows, ORIGIN, cache, replace=True, progress=False)
    assert all(mask_store(ORIGIN, PREDICTED, cache).has(r.key) for r in rows)
    assert not any(mask_store(ORIGIN, PREDICTED_TYPED, cache).has(r.key) for r in rows)


@pytest.mark.slow
def test_detect_bounds_each_types_raven_box_by_its_own_mask(typed_bench, typed_segmenter, tmp_path, one_thread):
    """Every window positive for every type: each window's whistle cells are the extent of the whistle mask that
    `mgc masks predict` stores for it, and the whistle box spans those cells alone, not the union band that the
    untyped columns (every type's mask at once) give."""
    root, rows = typed_bench
    segmenter = SegmenterModule.load_from_checkpoint(typed_segmenter[0], map_location="cpu")
    bundle_path = tiny_bundle(tmp_path / "typed.mgc")
    bundle, _ = load_bundle(bundle_path)
    bundle.segmenter, bundle.segmenter_state = self_contained(segmenter.hparams), segmenter.state_dict()
    bundle.thresholds = [0.0, 0.0, 0.0]
    save_bundle(bundle, bundle_path)
    audio = next(r for r in rows if tuple(r.labels) == (1, 1, 1)).path
    detect([audio], bundle_path, tmp_path / "out", DetectSettings(), progress=False)
    with open(tmp_path / "out" / "windows" / f"{output_name(audio.resolve())}.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert tuple(table[0]) == window_header(typed=True)
    stored = mask_store(ORIGIN, PREDICTED_TYPED, root / "cache")
    row_edges, column_edges = ORIGIN.row_edges_hz(), np.linspace(0, 0.25, ORIGIN.width + 1)
    for window, cells in zip((r for r in rows if r.path == audio), table):
        whistle = stored.load(window.key)[0]
        if not whistle.any():
            assert cells["whistle_low_hz"] == cells["whistle_begin_s"] == ""
            continue
        r, c = np.flatnonzero(whistle.any(axis=1)), np.flatnonzero(whistle.any(axis=0))
        drawn = [float(cells[f"whistle_{k}"]) for k in ("low_hz", "high_hz", "begin_s", "end_s")]
        assert drawn == pytest.approx([row_edges[r[-1] + 1], row_edges[r[0]], window.start_s + column_edges[c[0]],
                                       window.start_s + column_edges[c[-1] + 1]], abs=0.1)
    with open(tmp_path / "out" / "raven" / f"{output_name(audio.resolve())}.selections.txt", newline="") as handle:
        box = next(b for b in csv.DictReader(handle, delimiter="\t") if b["Annotation"] == "whistle")
    spans = {k: [float(cells[k]) for cells in table if cells[k]] for k in (*(f"whistle_{k}" for k in (
        "low_hz", "high_hz", "begin_s", "end_s")), "mask_low_hz", "mask_high_hz")}
    assert [float(box[k]) for k in ("Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)")] == \
        pytest.approx([min(spans["whistle_begin_s"]), max(spans["whistle_end_s"]), min(spans["whistle_low_hz"]),
                       max(spans["whistle_high_hz"])], abs=0.1)
    assert (min(spans["mask_low_hz"]), max(spans["mask_high_hz"])) != (float(box["Low Freq (Hz)"]),
                                                                       float(box["High Freq (Hz)"]))


def _table(path: Path, header, rows) -> Path:
    path.write_bytes(csv_bytes(header, rows))
    return path


def test_typed_boxes_take_their_types_band_and_time_and_untyped_ones_the_union(tmp_path):
    """A whistle in two touching windows and porpoise clicks in the second, whose channel stays empty: the whistle
    box spans the whistle channel's rows and columns; the porpoise box falls back to its window and the whole band.
    The same table without the typed columns gives both boxes the union's band and the windows' times."""
    base = [["a.wav", "0.000000", "0.250000", "0.9", "0.1", "0.1", "whistle", "0.8", "1000.0", "140000.0", ""],
            ["a.wav", "0.250000", "0.500000", "0.9", "0.1", "0.9", "whistle", "0.8", "2000.0", "130000.0", ""]]
    typed = [["2000.0", "15000.0", "0.100000", "0.200000", *[""] * 8],
             ["3000.0", "12000.0", "0.300000", "0.350000", *[""] * 8]]
    band = (0.0, 160_000.0)
    found = list(selections(_table(tmp_path / "typed.csv", window_header(True), [b + t for b, t in zip(base, typed)]),
                            [0.5, 0.5, 0.5], band))
    assert [(s[7], s[3], s[4], s[5], s[6]) for s in found] == [
        ("whistle", "0.100000", "0.350000", "2000.0", "15000.0"),
        ("porpoise_click", "0.250000", "0.500000", "0.0", "160000.0")]
    assert len(TYPED_COLUMNS) == 4 * len(SOUND_TYPES)
    untyped = list(selections(_table(tmp_path / "untyped.csv", WINDOW_HEADER, base), [0.5, 0.5, 0.5], band))
    assert [(s[7], s[3], s[4], s[5], s[6]) for s in untyped] == [
        ("whistle", "0.000000", "0.500000", "1000.0", "140000.0"),
        ("porpoise_click", "0.250000", "0.500000", "2000.0", "130000.0")]


def test_box_iou_and_box_scores_on_hand_made_boxes(tmp_path):
    assert box_iou((0, 1, 0, 10), (0.5, 1.5, 0, 10)) == pytest.approx(1 / 3)  # half of each in time, same band
    assert box_iou((0, 1, 0, 10), (0, 1, 5, 10)) == pytest.approx(0.5)
    assert box_iou((0, 1, 0, 10), (1, 2, 0, 10)) == 0.0
    bench = tmp_path / "bench"
    audio = write_audio(bench / "audio" / "R1.flac", np.zeros(384_000, dtype=np.float32), 384_000)
    header = ("recording,window,sound_type,start_s,end_s,low_hz,high_hz,snr_db,effective_snr_db,visible_pixels,"
              "labelled,params\n")
    events = ["R1,0,whistle,0.10,0.20,2000,10000,0,0,0,True,{}",   # box 1: IoU 1/3 in time, same band
              "R1,0,whistle,0.60,0.70,2000,10000,0,0,0,True,{}",   # box 2: same time, a quarter of the band
              "R1,0,porpoise_click,0.30,0.40,120000,140000,0,0,0,False,{}"]
    (bench / "events.csv").write_text(header + "\n".join(events) + "\n")
    boxes = [[1, "Spectrogram 1", 1, 0.05, 0.35, 2000, 10000, "whistle", 0.9],
             [2, "Spectrogram 1", 1, 0.60, 0.70, 2000, 34000, "whistle", 0.9],
             [3, "Spectrogram 1", 1, 0.30, 0.40, 120000, 140000, "porpoise_click", 0.9]]  # an unlabelled call
    (tmp_path / "out" / "raven").mkdir(parents=True)
    (tmp_path / "out" / "raven" / f"{output_name(audio.resolve())}.selections.txt").write_bytes(
        csv_bytes(RAVEN_HEADER, boxes, "\t"))
    scores = box_scores(tmp_path / "out", bench, ["R1"])
    assert {k: scores["whistle"][k] for k in ("events", "detected", "selections", "true_selections")} == {
        "events": 2, "detected": 1, "selections": 2, "true_selections": 1}
    assert (scores["porpoise_click"]["recall"], scores["porpoise_click"]["precision"]) == (None, 1.0)
    assert box_scores(tmp_path / "out", bench, ["R1"], min_iou=0.2)["whistle"]["detected"] == 2


def test_a_segmenter_refuses_masks_of_the_other_kind_and_a_typed_ones_sound_is_its_likeliest_type(one_thread):
    typed, untyped = SegmenterModule(typed=True, **TINY_SEGMENTER), SegmenterModule(**TINY_SEGMENTER)
    image = torch.rand(2, 1, ORIGIN.height, ORIGIN.width)
    with pytest.raises(ValueError, match="per-type masks .* got masks of 1 channel"):
        typed.training_step({"image": image, "mask": torch.zeros(2, 1, ORIGIN.height, ORIGIN.width)}, 0)
    with pytest.raises(ValueError, match="typed: true reads ideal-typed.* got masks of 3 channel"):
        untyped.training_step({"image": image, "mask": torch.zeros(2, 3, ORIGIN.height, ORIGIN.width)}, 0)
    maps = typed.eval().mask_probabilities(image)
    assert maps.shape == (2, len(SOUND_TYPES), ORIGIN.height, ORIGIN.width)
    assert torch.equal(typed.sound_probability(image), maps.amax(dim=1))
    assert untyped.eval().mask_probabilities(image).shape == (2, 1, ORIGIN.height, ORIGIN.width)


def test_typed_sources_are_refused_where_only_their_union_fits(tmp_path, capsys):
    manifest = tmp_path / "m.csv"
    write_manifest([], manifest)
    for source in ("ideal-typed", "predicted-typed"):
        with pytest.raises(ValueError, match=f"{source}' holds per-type masks .* use '{source[:-6]}'"):
            ClassificationDataModule(str(manifest), mask_source=source, cache_root=str(tmp_path / "cache"))
    assert main(["masks", "ideal", str(manifest), "--typed", "--criterion-db", "0", "--quiet"]) == 2
    assert "--typed masks use the labels' 6 dB criterion; leave out --criterion-db (given: 0)" in (
        capsys.readouterr().err)
