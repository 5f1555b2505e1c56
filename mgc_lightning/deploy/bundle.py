"""The model bundle: one file with everything inference needs, loadable without executing code from it.

Layout (a `torch.save` archive of plain types, read back with `weights_only=True`): {"format": "mgc-bundle",
"config": JSON text, "tensors": {"classifier.<name>" | "segmenter.<name>": tensor}, "sha256": content hash}. The JSON
holds the front end, both modules' constructor settings, the window length, the mask settings, label names,
calibration, per-type thresholds and the package version. Modules are rebuilt from the JSON with every path that
would load other files (pretrained weights, init_from) cleared, so a bundle is self-contained.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import __version__
from ..core.atomic import write_bytes_atomic
from ..core.checkpoints import check_model_class, class_path, load_checkpoint, unreadable
from ..core.errors import InputError, missing_file
from ..core.labels import JOINT_CLASS_NAMES, SOUND_TYPES
from ..frontend.spectrogram import SpectrogramConfig
from ..masks.ops import BINARY, MASK_KINDS

FORMAT = "mgc-bundle"
FORMAT_VERSION = 1
# Constructor settings that point at other files; a bundle never follows them.
EXTERNAL_FILE_SETTINGS = ("pretrained", "pretrained_path", "init_from")
# Temperatures and Platt scales outside this range pin every calibrated score near 0, 0.5 or 1 whatever the window:
# a fit that lands there learnt nothing usable, and a bundle that holds one is refused.
SCALING_RANGE = (0.05, 20.0)
PLATT_OFFSET_LIMIT = 20.0  # |offset| beyond it pins a type's scores near 0 or 1
DEFAULT_THRESHOLD = 0.5  # an uncalibrated type's threshold
# Per sound type: how its scores and its threshold were set (TypeCalibration.status).
CALIBRATED, RAW_SCORES, NOT_CALIBRATED = "calibrated", "raw scores kept", "not calibrated"


@dataclass(frozen=True)
class TypeCalibration:
    """How one sound type's scores and threshold were set, as `mgc calibrate` recorded it in the bundle."""

    status: str  # CALIBRATED | RAW_SCORES | NOT_CALIBRATED
    reason: str  # why raw scores were kept or why the type is not calibrated ('' when calibrated)
    threshold: float
    precision: float | None = None  # on the validation windows, at the threshold (None where it has no positives)
    recall: float | None = None
    positives: int | None = None  # validation windows with / without the type
    negatives: int | None = None

    def describe(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return f"{self.status}{why}, threshold {self.threshold:.4g}"


@dataclass
class Bundle:
    """A loaded bundle: settings as plain data, weights as state dicts."""

    front_end: SpectrogramConfig
    window_s: float
    classifier: dict  # ClassifierModule keyword arguments
    classifier_state: dict[str, torch.Tensor]
    segmenter: dict | None = None  # SegmenterModule keyword arguments
    segmenter_state: dict[str, torch.Tensor] | None = None
    mask_kind: str = BINARY  # how the classifier reads the segmenter's output (masks.ops.mask_of_kind)
    soft_sigma: float = 3.0
    temperature: float = 1.0  # multiclass head: logits / temperature
    platt: list[list[float]] | None = None  # multilabel head: per type [scale, offset] on the logit
    thresholds: list[float] = field(default_factory=lambda: [DEFAULT_THRESHOLD] * len(SOUND_TYPES))
    calibration: dict = field(default_factory=dict)  # how calibration was fitted (for the record)
    version: str = __version__

    def settings(self) -> dict:
        return {
            "format_version": FORMAT_VERSION, "package_version": self.version,
            "front_end": self.front_end.to_dict(), "window_s": self.window_s,
            "sound_types": list(SOUND_TYPES), "joint_class_names": list(JOINT_CLASS_NAMES),
            "classifier": self.classifier, "segmenter": self.segmenter,
            "mask_kind": self.mask_kind, "soft_sigma": self.soft_sigma,
            "temperature": self.temperature, "platt": self.platt, "thresholds": self.thresholds,
            "calibration": self.calibration,
        }

    @property
    def typed_masks(self) -> bool:
        """Whether the segmenter draws one mask per sound type (`mgc detect` then bounds each type's boxes by it)."""
        return bool(self.segmenter and self.segmenter.get("typed"))

    def type_calibrations(self) -> dict[str, TypeCalibration]:
        """Per sound type how its scores and threshold were set; every type 'not calibrated' in a bundle that
        `mgc calibrate` never saw."""
        recorded = self.calibration.get("validation", {})
        if not recorded:
            return {name: TypeCalibration(NOT_CALIBRATED, "the bundle was never calibrated: see mgc calibrate",
                                          threshold) for name, threshold in zip(SOUND_TYPES, self.thresholds)}
        earlier = {"status": "calibrated before per-type status was recorded", "reason": ""}
        switched_off = {"status": NOT_CALIBRATED, "reason": "switched off by an earlier mgc (threshold 1, no "
                        "positives in validation): rerun mgc calibrate"}
        return {name: TypeCalibration(**{**earlier, **recorded[name],
                                         **(switched_off if "status" not in recorded[name] and threshold >= 1 else {})})
                for name, threshold in zip(SOUND_TYPES, self.thresholds)}

    def problems(self) -> list[str]:
        """What makes the bundle's window, calibration or thresholds unusable (a bundle edited by hand, or a fit
        gone wrong): each would write NaN or meaningless probabilities."""
        low, high = SCALING_RANGE
        found = []
        if self.mask_kind not in MASK_KINDS:
            found.append(f"mask kind {self.mask_kind!r} must be one of {MASK_KINDS}")
        if not (math.isfinite(self.window_s) and self.window_s > 0):
            found.append(f"window length {self.window_s} s must be a positive number")
        if not (math.isfinite(self.temperature) and low <= self.temperature <= high):
            found.append(f"temperature {self.temperature} must be a number in [{low:g}, {high:g}]")
        for name, pair in zip(SOUND_TYPES, self.platt or []):
            scale, offset = pair
            if not (math.isfinite(scale) and low <= scale <= high and math.isfinite(offset)
                    and abs(offset) <= PLATT_OFFSET_LIMIT):
                found.append(f"Platt scaling of {name} {pair} needs a scale in [{low:g}, {high:g}] and an offset in "
                             f"[-{PLATT_OFFSET_LIMIT:g}, {PLATT_OFFSET_LIMIT:g}]")
        if self.platt is not None and len(self.platt) != len(SOUND_TYPES):
            found.append(f"Platt scaling needs one [scale, offset] per sound type, got {len(self.platt)}")
        if len(self.thresholds) != len(SOUND_TYPES):
            found.append(f"thresholds need one value per sound type, got {len(self.thresholds)}")
        found += [f"threshold of {name} {value} must be a number in [0, 1]"
                  for name, value in zip(SOUND_TYPES, self.thresholds)
                  if not (math.isfinite(value) and 0 <= value <= 1)]
        return found

    def tensors(self) -> dict[str, torch.Tensor]:
        named = {f"classifier.{k}": v for k, v in self.classifier_state.items()}
        named.update({f"segmenter.{k}": v for k, v in (self.segmenter_state or {}).items()})
        return {k: v.detach().cpu().contiguous() for k, v in sorted(named.items())}


def content_hash(config_text: str, tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256(config_text.encode())
    for name in sorted(tensors):
        tensor = tensors[name]
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.numpy().tobytes() if tensor.dtype != torch.bfloat16 else tensor.float().numpy().tobytes())
    return digest.hexdigest()


def save_bundle(bundle: Bundle, path: str | Path) -> str:
    """Write atomically; returns the content hash. A bundle that loading would refuse is not written."""
    if bundle.problems():
        raise InputError(f"{path}: not written: " + "; ".join(bundle.problems()))
    text = json.dumps(bundle.settings(), sort_keys=True)
    tensors = bundle.tensors()
    digest = content_hash(text, tensors)
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "config": text, "tensors": tensors, "sha256": digest}, buffer)
    write_bytes_atomic(Path(path), buffer.getvalue())
    return digest


def load_bundle(path: str | Path) -> tuple[Bundle, str]:
    """The bundle and its content hash; InputError for a missing, foreign, damaged or altered file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {missing_file(path, 'model bundle')}")
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise InputError(f"{path}: not a readable mgc model bundle ({unreadable(error)})") from None
    if not isinstance(stored, dict) or stored.get("format") != FORMAT or not {"config", "tensors", "sha256"} <= set(stored):
        raise InputError(f"{path}: not an mgc model bundle (made by `mgc export`)")
    text, tensors = stored["config"], stored["tensors"]
    if content_hash(text, tensors) != stored["sha256"]:
        raise InputError(f"{path}: content hash mismatch: the bundle was altered or damaged after it was written")
    settings = json.loads(text)
    if settings.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{path}: bundle format {settings.get('format_version')} is not supported "
                         f"(this mgc reads format {FORMAT_VERSION})")
    if settings["sound_types"] != list(SOUND_TYPES):
        raise InputError(f"{path}: bundle sound types {settings['sound_types']} differ from {list(SOUND_TYPES)}")
    part = lambda prefix: {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}  # noqa: E731
    bundle = Bundle(
        front_end=SpectrogramConfig.from_dict(settings["front_end"]), window_s=float(settings["window_s"]),
        classifier=settings["classifier"], classifier_state=part("classifier."),
        segmenter=settings["segmenter"], segmenter_state=part("segmenter.") if settings["segmenter"] else None,
        mask_kind=settings["mask_kind"], soft_sigma=float(settings["soft_sigma"]),
        temperature=float(settings["temperature"]), platt=settings["platt"], thresholds=list(settings["thresholds"]),
        calibration=settings["calibration"], version=settings["package_version"],
    )
    if bundle.problems():
        raise InputError(f"{path}: unusable bundle: " + "; ".join(bundle.problems()))
    return bundle, stored["sha256"]


def self_contained(hyperparameters: dict) -> dict:
    """Constructor settings with every reference to another file cleared."""
    settings = {k: v for k, v in dict(hyperparameters).items() if not k.startswith("_")}
    for name in EXTERNAL_FILE_SETTINGS:
        if name in settings:
            settings[name] = False if name == "pretrained" else None
    return settings


def _read_checkpoint(path: str | Path, kind: str) -> dict:
    """The checkpoint read as weights only (a crafted file's code never runs), of the expected model class."""
    from ..models.classifier import ClassifierModule
    from ..models.segmenter import SegmenterModule

    what = f"{kind} checkpoint"
    checkpoint = load_checkpoint(path, what)
    check_model_class(path, checkpoint, class_path(ClassifierModule if kind == "classifier" else SegmenterModule),
                      what)
    if "hyper_parameters" not in checkpoint:
        raise InputError(f"{path}: not a Lightning {kind} checkpoint (no hyper_parameters); was it trained with "
                         "`mgc fit`?")
    return checkpoint


def training_windows(checkpoint: dict) -> tuple[list[float], str] | None:
    """The window lengths (s) a model was trained on and where they were read: the checkpoint's own record, else its
    training manifest when that is here; None when neither says."""
    from ..audio.manifest import load_manifest
    from ..core.checkpoints import WINDOWS_KEY

    if checkpoint.get(WINDOWS_KEY):
        return list(checkpoint[WINDOWS_KEY]), "its checkpoint"
    manifest = (checkpoint.get("datamodule_hyper_parameters") or {}).get("manifest")
    if not manifest or not Path(manifest).is_file():
        return None
    rows = load_manifest(manifest, check_audio=False)
    return sorted({round(row.duration_s, 6) for row in rows}), f"its training manifest {manifest}"


def _window_length(checkpoint: dict, classifier_path: str | Path, window_s: float | None) -> float:
    """The window the classifier was trained on; a given one must be among its training windows where they are
    known (another length would feed it images on another time scale)."""
    known = training_windows(checkpoint)
    if window_s is not None:
        if not (math.isfinite(window_s) and window_s > 0):
            raise InputError(f"window length must be positive, got {window_s}")
        if known is not None and round(window_s, 6) not in known[0]:
            raise InputError(f"{classifier_path}: --window {window_s:g} s contradicts the classifier's training "
                             f"windows of {', '.join(f'{w:g}' for w in known[0])} s (from {known[1]}): it would see "
                             "images on another time scale; leave --window out or pass a training length")
        return float(window_s)
    if known is None:
        raise InputError(f"{classifier_path}: neither the checkpoint nor its training manifest (not here) says the "
                         "window length; pass --window SECONDS")
    if len(known[0]) != 1:
        raise InputError(f"{classifier_path}: trained on windows of several lengths {known[0]} (from {known[1]}); "
                         "pass --window SECONDS")
    return known[0][0]


def bundle_from_checkpoints(classifier: str | Path, segmenter: str | Path | None = None,
                            window_s: float | None = None) -> Bundle:
    """A bundle from a classifier checkpoint (and the segmenter that draws its masks), both trained by `mgc fit`."""
    from ..core.checkpoints import FRONT_END_KEY

    checkpoint = _read_checkpoint(classifier, "classifier")
    if FRONT_END_KEY not in checkpoint or "datamodule_hyper_parameters" not in checkpoint:
        raise InputError(f"{classifier}: checkpoint lacks the front-end config or data settings; was it trained "
                         "with `mgc fit`?")
    front_end = SpectrogramConfig.from_dict(checkpoint[FRONT_END_KEY])
    data = dict(checkpoint["datamodule_hyper_parameters"])
    settings = self_contained(checkpoint["hyper_parameters"])
    bundle = Bundle(front_end=front_end, window_s=_window_length(checkpoint, classifier, window_s), classifier=settings,
                    classifier_state=checkpoint["state_dict"], mask_kind=data.get("mask_kind", BINARY),
                    soft_sigma=float(data.get("soft_sigma", 3.0)))
    if settings.get("mask_input", "none") != "none" and segmenter is None:
        raise InputError(f"{classifier}: this classifier reads masks (mask_input={settings['mask_input']!r}): pass "
                         "the segmenter checkpoint that draws them (--segmenter)")
    if segmenter is not None:
        seg = _read_checkpoint(segmenter, "segmenter")
        seg_config = SpectrogramConfig.from_dict(seg[FRONT_END_KEY]) if seg.get(FRONT_END_KEY) else front_end
        if seg_config.hash != front_end.hash:
            raise InputError(f"{segmenter}: segmenter front end {seg_config.name!r} [{seg_config.hash}] differs from "
                             f"the classifier's {front_end.name!r} [{front_end.hash}]; both must see the same images")
        seg_windows = training_windows(seg)
        if seg_windows is not None and round(bundle.window_s, 6) not in seg_windows[0]:
            raise InputError(f"{segmenter}: the segmenter was trained on windows of "
                             f"{', '.join(f'{w:g}' for w in seg_windows[0])} s (from {seg_windows[1]}), the bundle "
                             f"analyses {bundle.window_s:g} s windows: its masks would be drawn on images of another "
                             "time scale; pass the segmenter trained with this classifier's windows")
        bundle.segmenter = self_contained(seg["hyper_parameters"])
        bundle.segmenter_state = seg["state_dict"]
    return bundle
