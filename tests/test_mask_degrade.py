"""Ideal masks degraded with a segmenter's errors: each kind of error, determinism, calibration to a target IoU, the
dataset job and `mgc masks degrade`."""

import json
import re

import numpy as np
import pytest

from mgc_lightning.audio.manifest import SplitConfig, split_rows
from mgc_lightning.cli import main
from mgc_lightning.frontend.cache import mask_store
from mgc_lightning.frontend.spectrogram import get_preset
from mgc_lightning.masks.degrade import (
    RECORD, add_false_blobs, calibrate_severity, degrade_mask, degraded_source, degraded_target, drop_faint_components,
    jitter_boundaries, resize_components, write_degraded_masks,
)
from mgc_lightning.masks.sources import evaluate_masks
from conftest import small_benchmark as build_small_benchmark

TOLERANCE = 0.03  # what the calibration meets on 48 windows, where one component moves the pooled IoU visibly


@pytest.fixture(scope="module")
def small_benchmark(tmp_path_factory):
    root = tmp_path_factory.mktemp("degrade")
    return build_small_benchmark(root, windows=48, per_recording=8, deployments=4, seed=13), root / "cache"


def noise_image(seed: int = 0) -> np.ndarray:
    return np.clip(0.4 + 0.03 * np.random.default_rng(seed).standard_normal((128, 128)), 0, 1).astype(np.float32)


def test_severity_zero_returns_the_mask_unchanged():
    mask = np.zeros((128, 128), bool)
    mask[10:14, 20:90] = mask[60:100, 50] = True
    unchanged = degrade_mask(mask, noise_image(), 0.0, np.random.default_rng(1))
    assert np.array_equal(unchanged, mask)
    assert not np.array_equal(degrade_mask(mask, noise_image(), 0.5, np.random.default_rng(1)), mask)
    with pytest.raises(ValueError, match=r"severity must be in \[0, 1\]"):
        degrade_mask(mask, noise_image(), 1.5, np.random.default_rng(1))


def test_a_faint_call_is_missed_before_a_bright_one():
    image, mask = noise_image(), np.zeros((128, 128), bool)
    mask[20:24, 10:60] = mask[80:84, 10:60] = True
    image[20:24, 10:60] += 0.1  # faint
    image[80:84, 10:60] += 0.5  # bright
    outcomes = set()
    for seed in range(40):
        kept = drop_faint_components(mask, image, 0.5, np.random.default_rng(seed))
        outcomes.add((bool(kept[20:24, 10:60].any()), bool(kept[80:84, 10:60].any())))
    assert (False, True) in outcomes  # the faint one missed alone
    assert (True, False) not in outcomes  # never the bright one alone
    assert not drop_faint_components(mask, image, 1.0, np.random.default_rng(0)).any()


def test_a_noise_window_gets_false_blobs_on_a_bright_horizontal_line():
    image, empty = noise_image(), np.zeros((128, 128), bool)
    image[50:52, :] += 0.3  # a vessel tonal across the whole window
    speckles = np.random.default_rng(2).integers(0, 128, (30, 2))
    image[speckles[:, 0], speckles[:, 1]] += 0.3  # impulses as bright as the tonal, but not line-like
    blobs = add_false_blobs(empty, image, 1.0, np.random.default_rng(0))
    assert blobs[50:52].sum() > 0.8 * blobs.sum() > 0
    assert not add_false_blobs(empty, image, 0.0, np.random.default_rng(0)).any()
    assert all(degrade_mask(empty, image, 0.6, np.random.default_rng(seed)).any() for seed in range(5))


def test_dilation_grows_and_erosion_shrinks_a_component():
    mask = np.zeros((128, 128), bool)
    mask[40:49, 30:70] = True
    grown = shrunk = 0
    for seed in range(20):
        resized = resize_components(mask, 1.0, np.random.default_rng(seed))
        if resized.sum() > mask.sum():
            assert (resized >= mask).all()
            grown += 1
        else:
            assert 0 < resized.sum() < mask.sum() and (resized <= mask).all()
            shrunk += 1
    assert grown and shrunk
    click = np.zeros((128, 128), bool)
    click[20:100, 64] = True
    assert all(resize_components(click, 1.0, np.random.default_rng(seed)).any() for seed in range(10))


def test_jitter_changes_only_boundary_pixels():
    mask = np.zeros((128, 128), bool)
    mask[20:40, 30:70] = True
    boundary = np.zeros((128, 128), bool)
    boundary[19:41, 30:70] = boundary[20:40, 29:71] = True  # the block and the pixels beside its edges
    boundary[21:39, 31:69] = False  # but not its inside
    jittered = jitter_boundaries(mask, 0.5, np.random.default_rng(0))
    changed = jittered ^ mask
    assert changed.any() and not (changed & ~boundary).any()


@pytest.mark.slow
def test_the_same_seed_gives_the_same_masks_whatever_the_order_of_rows(small_benchmark):
    rows, cache = small_benchmark
    config = get_preset("origin")
    mask, image = np.zeros((128, 128), bool), noise_image()
    mask[30:40, 10:80] = True
    assert np.array_equal(degrade_mask(mask, image, 0.4, np.random.default_rng(3)),
                          degrade_mask(mask, image, 0.4, np.random.default_rng(3)))
    store = mask_store(config, degraded_source(0.8), cache)
    first = write_degraded_masks(rows, config, cache, 0.8, seed=4, progress=False)
    masks = {row.key: store.load(row.key) for row in rows}
    assert write_degraded_masks(rows[::-1], config, cache, 0.8, seed=4, progress=False) == first
    assert all(np.array_equal(store.load(row.key), masks[row.key]) for row in rows)
    write_degraded_masks(rows, config, cache, 0.8, seed=5, progress=False)
    assert any(not np.array_equal(store.load(row.key), masks[row.key]) for row in rows)


@pytest.mark.slow
@pytest.mark.parametrize("target", [0.5, 0.7, 0.9])
def test_degraded_masks_reach_the_target_iou_as_mask_metrics_count_it(small_benchmark, target):
    rows, cache = small_benchmark
    config = get_preset("origin")
    achieved = write_degraded_masks(rows, config, cache, target, progress=False)
    assert abs(achieved - target) <= TOLERANCE, achieved
    assert evaluate_masks(rows, config, cache, degraded_source(target))["iou"] == pytest.approx(achieved, abs=1e-6)
    calls = json.loads((mask_store(config, degraded_source(target), cache).folder / RECORD).read_text())["calls"]
    assert calls[-1]["target_iou"] == target and calls[-1]["achieved_iou"] == achieved
    assert 0 < calls[-1]["severity"] < 1


def test_an_unreachable_target_is_refused():
    mask = np.zeros((128, 128), bool)
    mask[8::16, 8:120] = mask[9::16, 8:120] = True  # 8 tonal-like calls: the harshest errors miss only some
    with pytest.raises(ValueError, match="out of reach"):
        calibrate_severity([(mask, noise_image())], [0], 0.01)


def test_source_names_hold_the_target():
    assert degraded_source(0.7) == "degraded-iou0.70"
    assert degraded_target(degraded_source(0.55)) == 0.55
    assert degraded_target("ideal") is None and degraded_target("degraded-iou0.70x") is None


@pytest.mark.slow
def test_masks_degrade_writes_masks_that_masks_evaluate_scores_near_the_target(small_benchmark, capsys):
    rows, cache = small_benchmark
    manifest = cache.parent / "bench" / "manifest.csv"
    assert main(["masks", "degrade", str(manifest), "--iou", "0.7", "--cache-root", str(cache), "--quiet"]) == 0
    degraded = float(re.search(r"pooled IoU (\d\.\d+)", capsys.readouterr().out).group(1))
    assert main(["masks", "evaluate", str(manifest), "--source", "degraded-iou0.70", "--split", "all",
                 "--cache-root", str(cache)]) == 0
    evaluated = float(re.search(r"iou (\d\.\d+)", capsys.readouterr().out).group(1))
    assert evaluated == degraded and abs(evaluated - 0.7) <= TOLERANCE


@pytest.mark.slow
def test_masks_degrade_on_a_split_writes_only_that_split(small_benchmark):
    rows, cache = small_benchmark
    manifest = cache.parent / "bench" / "manifest.csv"
    test_side = {rows[i].key for i in split_rows(rows, SplitConfig(seed=2))["test"]}
    assert main(["masks", "degrade", str(manifest), "--iou", "0.6", "--split", "test", "--seed", "2",
                 "--cache-root", str(cache), "--quiet"]) == 0
    store = mask_store(get_preset("origin"), degraded_source(0.6), cache)
    assert 0 < len(test_side) < len(rows) and {row.key for row in rows if store.has(row.key)} == test_side
