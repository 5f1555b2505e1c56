"""Candidate masks, mask metrics, the high-quality set, export for refinement and the labels masks carry alone."""

import numpy as np
import pytest
import torch

from mgc_lightning.audio.manifest import SplitConfig, load_manifest, split_rows
from mgc_lightning.cli import main
from mgc_lightning.data.datamodules import SegmentationDataModule
from mgc_lightning.frontend.cache import mask_store
from mgc_lightning.frontend.spectrogram import get_preset
from mgc_lightning.masks.ops import candidate_mask, mask_metrics, read_mask_png
from mgc_lightning.masks.sources import (
    evaluate_masks, export_for_refinement, label_readout, propose_masks, select_high_quality,
)
from mgc_lightning.synth.build import ideal_source, write_ideal_masks
from conftest import small_benchmark as build_small_benchmark



@pytest.fixture(scope="module")
def small_benchmark(tmp_path_factory):
    root = tmp_path_factory.mktemp("masks")
    return build_small_benchmark(root, windows=96, per_recording=12, deployments=4, seed=11), root / "cache"


def test_candidate_mask_finds_a_call_and_ignores_stationary_bands():
    rng = np.random.default_rng(0)
    image = 0.5 + 0.03 * rng.standard_normal((128, 128)).astype(np.float32)
    image[90:94, :] += 0.3  # a vessel tonal: present all the time, so not a call
    truth = np.zeros((128, 128), bool)
    truth[30:34, 40:80] = True  # a whistle-like stroke
    image[truth] += 0.25
    mask = candidate_mask(image, sensitivity=0.7)
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.6, iou
    assert not mask[90:94].any()
    assert candidate_mask(image, 0.9).sum() >= candidate_mask(image, 0.2).sum()
    with pytest.raises(ValueError, match="sensitivity must be in"):
        candidate_mask(image, 1.5)


def test_mask_metrics_match_hand_computed_values():
    prediction = torch.zeros(2, 4, 4, dtype=torch.long)
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    prediction[0, :2, :2] = 1  # 4 pixels
    target[0, :2, :] = 1  # 8 pixels, 4 shared
    metrics = mask_metrics()
    metrics.update(prediction, target)
    scores = {k: float(v) for k, v in metrics.compute().items()}
    assert scores["iou"] == pytest.approx(4 / 8)
    assert scores["pixel_f1"] == pytest.approx(2 * 4 / (4 + 8))
    assert scores["dice"] == pytest.approx(2 * 4 / (4 + 8))  # window 1 is empty in both and is skipped


@pytest.mark.slow
def test_candidate_masks_against_ideal_masks_on_the_benchmark(small_benchmark):
    rows, cache = small_benchmark
    config = get_preset("origin")
    propose_masks(rows, config, cache, sensitivity=0.7, progress=False)
    scores = evaluate_masks(rows, config, cache, "candidate")
    assert 0.1 < scores["iou"] < 0.9, scores  # a real but imperfect classical baseline
    assert len(mask_store(config, "candidate", cache)) == len(rows)
    with pytest.raises(FileNotFoundError, match="no 'predicted' mask"):
        evaluate_masks(rows[:1], config, cache, "predicted")


@pytest.mark.slow
def test_high_quality_set_is_stratified_and_never_in_the_test_split(small_benchmark):
    rows, cache = small_benchmark
    split = SplitConfig(seed=0)
    chosen = select_high_quality(rows, split, count=40, seed=1)
    assert len(chosen) == 40 and len(set(chosen)) == 40
    counts = np.bincount([row.joint_class for row in chosen], minlength=8)
    assert counts.max() - counts.min() <= 2, counts
    test_keys = {rows[i].key for i in split_rows(rows, split)["test"]}
    assert not test_keys & {row.key for row in chosen}
    assert select_high_quality(rows, split, count=40, seed=1) == chosen
    only_whistles = select_high_quality(rows, split, 10, available=lambda row: row.whistle == 1)
    assert all(row.whistle for row in only_whistles)


@pytest.mark.slow
def test_export_for_refinement_round_trips_through_pngs(small_benchmark, tmp_path):
    rows, cache = small_benchmark
    config = get_preset("origin")
    propose_masks(rows[::12][:6], config, cache, progress=False)
    manifest = export_for_refinement(rows[::12][:6], config, cache, tmp_path / "refine")
    exported = load_manifest(manifest)
    assert len(list((tmp_path / "refine").glob("*.spectrogram.png"))) == 6
    for row in exported:
        assert np.array_equal(read_mask_png(row.mask, config), mask_store(config, "candidate", cache).load(row.key))
    module = SegmentationDataModule(str(manifest), cache_root=str(cache), mask_source="manifest",
                                    split_fractions=(0.5, 0.5, 0.0))
    module.setup("fit")
    item = module.datasets["val"][0]
    assert item["mask"].shape == (1, 128, 128) and set(item["mask"].unique().tolist()) <= {0.0, 1.0}


@pytest.mark.slow
def test_ideal_mask_criterion_names_its_source_and_keeps_fewer_pixels_as_it_rises(small_benchmark):
    rows, cache = small_benchmark
    config, chosen = get_preset("origin"), rows[:24]
    assert [ideal_source(c) for c in (6.0, 0.0, 3.0, -3.0)] == ["ideal", "ideal-0db", "ideal-3db", "ideal-minus3db"]
    assert write_ideal_masks(chosen, config, cache, criteria_db=(0.0, 3.0, 6.0), progress=False) == len(chosen)
    masks = {c: np.stack([mask_store(config, ideal_source(c), cache).load(r.key) for r in chosen]) for c in (0, 3, 6)}
    assert masks[0].sum() > masks[3].sum() > masks[6].sum() > 0
    assert not (masks[6] & ~masks[0]).any()  # a pixel 6 dB above the noise is also above it
    assert evaluate_masks(chosen, config, cache, "ideal", reference="ideal-0db")["iou"] < 0.9


@pytest.mark.slow
def test_ideal_masks_of_another_criterion_are_replaced_not_mixed(small_benchmark, tmp_path):
    rows, _ = small_benchmark
    config, chosen = get_preset("origin"), rows[:8]
    assert write_ideal_masks(chosen, config, tmp_path, progress=False) == len(chosen)
    assert write_ideal_masks(chosen, config, tmp_path, progress=False) == 0  # resumable
    store = mask_store(config, "ideal", tmp_path)
    six_db = {r.key: store.load(r.key) for r in chosen}
    (store.folder / "criterion.json").unlink()  # as an `ideal` folder from before sources were named by criterion
    store.save(chosen[0].key, np.ones((128, 128), bool))
    store.save(rows[20].key, np.ones((128, 128), bool))
    assert write_ideal_masks(chosen, config, tmp_path, progress=False) == len(chosen)
    assert all(np.array_equal(store.load(r.key), six_db[r.key]) for r in chosen)
    assert len(store) == len(chosen)  # the other window's stale mask was cleared, not kept


@pytest.mark.slow
def test_masks_evaluate_reports_several_criteria_in_one_call(small_benchmark, capsys):
    rows, cache = small_benchmark
    write_ideal_masks(rows, get_preset("origin"), cache, criteria_db=(0.0, 6.0), progress=False)
    manifest = cache.parent / "bench" / "manifest.csv"
    assert main(["masks", "evaluate", str(manifest), "--source", "ideal", "--criterion-db", "0", "6", "--split", "all",
                 "--cache-root", str(cache)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(" masks")[0] for line in lines] == ["ideal vs ideal-0db", "ideal vs ideal"]
    assert "iou 1.000" in lines[1] and "iou 1.000" not in lines[0]


@pytest.mark.slow
def test_label_readout_reads_the_labels_off_exact_masks_but_not_off_masks_of_other_windows(small_benchmark):
    """Exact masks cover the labelled calls only, so their pixel counts per band give the labels away; the same masks
    handed to the wrong windows carry nothing of those windows' labels."""
    rows, cache = small_benchmark
    config = get_preset("origin")
    train, test = rows[:60], rows[60:]
    exact = label_readout(train, test, config, cache, "ideal")
    ideal, shuffled = mask_store(config, "ideal", cache), mask_store(config, "shuffled", cache)
    masks = [ideal.load(row.key) for row in rows]
    for row, mask in zip(rows, masks[7:] + masks[:7]):
        shuffled.save(row.key, mask)
    chance = max(np.mean([row.joint_class == c for row in test]) for c in range(8))
    assert exact > 0.6 and exact > chance + 0.3, (exact, chance)
    assert label_readout(train, test, config, cache, "shuffled") < exact - 0.3
