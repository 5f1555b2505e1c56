"""`mgc calibrate` refuses to mislead: too few validation windows is an error with the counts, a fit outside the
range a bundle accepts keeps the raw scores and says why, a sound type absent from validation is reported as not
calibrated (never switched off), and a bundle edited to an unusable calibration is refused. Untrained tiny bundles
on real audio files: seconds each."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from conftest import edited_bundle, tiny_bundle, write_audio, write_rows
from mgc_lightning.audio.manifest import SplitConfig
from mgc_lightning.core.errors import InputError
from mgc_lightning.core.labels import SOUND_TYPES
from mgc_lightning.deploy.bundle import CALIBRATED, NOT_CALIBRATED, RAW_SCORES, Bundle, load_bundle, save_bundle
from mgc_lightning.deploy.calibration import calibrate
from mgc_lightning.deploy.detect import DetectSettings, detect

RATE, WINDOW = 384_000, 0.25
EVERY_WINDOW_VALIDATES = SplitConfig(fractions=(0.0, 1.0, 0.0))
WHISTLE, BELUGA, BOTH = (1, 0, 0), (0, 1, 0), (1, 1, 0)  # no porpoise anywhere


def validation_manifest(folder: Path, labels: list[tuple[int, int, int]]) -> Path:
    """One window of noise per label vector, each its own recording."""
    rng = np.random.default_rng(0)
    write_audio(folder / "a.wav", rng.normal(0, 0.05, int(len(labels) * WINDOW * RATE)).astype(np.float32), RATE)
    rows = [["a.wav", i * WINDOW, WINDOW, *bits, f"r{i}", "s"] for i, bits in enumerate(labels)]
    return write_rows(folder / "m.csv", rows)


def test_a_test_only_manifest_is_refused_before_any_window_is_scored(tmp_path):
    """Thresholds chosen on a test set would flatter everything measured on it (issue #25): refused by the `use`
    column, as the data modules refuse training on it, and nothing is written."""
    manifest = validation_manifest(tmp_path, [WHISTLE, BELUGA, BOTH] * 5)
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join([lines[0] + ",use", *(line + ",test-only" for line in lines[1:])]) + "\n")
    with pytest.raises(InputError, match="15 row\\(s\\) are marked test-only") as refused:
        calibrate(tiny_bundle(tmp_path / "model.mgc"), manifest, EVERY_WINDOW_VALIDATES, out=tmp_path / "out.mgc")
    assert str(manifest) in str(refused.value) and not (tmp_path / "out.mgc").exists()


def test_too_few_validation_windows_are_refused_with_the_counts(tmp_path):
    manifest = validation_manifest(tmp_path, [BOTH] * 2 + [BELUGA] * 3 + [(0, 0, 0)] * 5)
    with pytest.raises(InputError, match=r"m.csv: too few validation windows to calibrate on \(whistle in 2 and "
                                         r"absent from 8 of 10 usable windows\): each sound type needs at least 5 "
                                         r"windows with it and 5 without"):
        calibrate(tiny_bundle(tmp_path / "model.mgc"), manifest, EVERY_WINDOW_VALIDATES, out=tmp_path / "out.mgc")
    assert not (tmp_path / "out.mgc").exists()


@pytest.mark.parametrize("head", ["multiclass", "multilabel"])
def test_a_type_absent_from_validation_is_not_calibrated_and_keeps_its_threshold(head, tmp_path):
    """Before, its threshold became 1.0 (the type switched off) with only 'target not reached' to say so."""
    manifest = validation_manifest(tmp_path, [WHISTLE, BELUGA, BOTH] * 5)
    calibrated = tmp_path / "calibrated.mgc"
    calibrate(tiny_bundle(tmp_path / "model.mgc", head=head), manifest, EVERY_WINDOW_VALIDATES, out=calibrated)
    bundle, _ = load_bundle(calibrated)
    assert bundle.thresholds[2] == 0.5
    types = bundle.type_calibrations()
    porpoise = types["porpoise_click"]
    assert (porpoise.status, porpoise.reason) == (NOT_CALIBRATED, "no window with it in the validation split")
    assert porpoise.threshold == 0.5 and (porpoise.positives, porpoise.negatives) == (0, 15)
    if head == "multilabel":
        assert bundle.platt[2] == [1.0, 0.0]
    assert all(types[name].status in (CALIBRATED, RAW_SCORES) and types[name].positives == 10
               for name in SOUND_TYPES[:2])
    write_audio(tmp_path / "rec" / "b.wav", np.random.default_rng(1).normal(0, 0.05, RATE // 2).astype(np.float32),
                RATE)
    summary = detect([tmp_path / "rec"], calibrated, tmp_path / "detections", DetectSettings(), progress=False)
    assert "porpoise_click not calibrated (no window with it in the validation split), threshold 0.5" in summary.line()


def test_an_extreme_fitted_temperature_keeps_the_raw_scores_and_says_why(tmp_path):
    """A model that calls every window 'none' with certainty, on windows that all hold a sound: the negative
    log-likelihood falls as the temperature grows without end, and the fitted one gave every type p = 0.5."""
    manifest = validation_manifest(tmp_path, [WHISTLE, BELUGA, BOTH] * 5)
    model = tiny_bundle(tmp_path / "model.mgc", head_bias=[10.0] + [0.0] * 7)
    result = calibrate(model, manifest, EVERY_WINDOW_VALIDATES, out=tmp_path / "calibrated.mgc")
    bundle, _ = load_bundle(tmp_path / "calibrated.mgc")
    assert bundle.temperature == 1.0 and result.identity_kept
    whistle = bundle.type_calibrations()["whistle"]
    assert whistle.status == RAW_SCORES
    assert whistle.reason.startswith("the fitted temperature ") and whistle.reason.endswith(" is outside [0.05, 20]")
    assert float(whistle.reason.split()[3]) > 20


@pytest.mark.parametrize("settings, problem", [
    ({"temperature": 0.0}, "temperature 0.0 must be a number in [0.05, 20]"),
    ({"temperature": math.nan}, "temperature nan must be a number in [0.05, 20]"),
    ({"thresholds": [0.5, 1.5, 0.5]}, "threshold of beluga_click 1.5 must be a number in [0, 1]"),
    ({"thresholds": [-0.1, 0.5, 0.5]}, "threshold of whistle -0.1 must be a number in [0, 1]"),
    ({"platt": [[1.0, 0.0], [0.0, 0.0], [1.0, 0.0]]}, "Platt scaling of beluga_click [0.0, 0.0] needs a scale in"),
], ids=["temperature-0", "temperature-nan", "threshold-above-1", "threshold-negative", "platt-scale-0"])
def test_a_bundle_edited_to_an_unusable_calibration_is_refused(settings, problem, tmp_path):
    """Before, it loaded and detection wrote NaN probabilities (or flagged nothing, or everything)."""
    edited = edited_bundle(tiny_bundle(tmp_path / "model.mgc"), tmp_path / "edited.mgc", **settings)
    with pytest.raises(InputError) as refused:
        load_bundle(edited)
    assert str(refused.value) == f"{edited}: unusable bundle: {problem}" or (
        str(refused.value).startswith(f"{edited}: unusable bundle: {problem}"))


def test_a_bundle_that_loading_would_refuse_is_never_written(tmp_path):
    bundle, _ = load_bundle(tiny_bundle(tmp_path / "model.mgc"))
    with pytest.raises(InputError, match=r"out.mgc: not written: temperature inf must be a number in \[0.05, 20\]"):
        save_bundle(Bundle(**{**bundle.__dict__, "temperature": math.inf}), tmp_path / "out.mgc")
    assert not (tmp_path / "out.mgc").exists()
