"""Reading checkpoints safely: a checkpoint is unpickled with `weights_only=True` (tensors, containers and plain
values only), so a crafted file cannot run code; a file that is not one of ours, or of another model, gets a one-line
InputError naming it. Every path that opens a checkpoint (fit/test --ckpt_path, evaluate, init_from, masks predict)
comes through here before Lightning sees the file."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import torch
from lightning.pytorch import LightningModule

from .errors import InputError, missing_file

Module = TypeVar("Module", bound=LightningModule)

# What `mgc fit` stores in every checkpoint beside Lightning's own keys (train.tracking.CheckpointMetadata writes them):
# inference and resume read them back without building a model.
RUN_ID_KEY = "mlflow_run_id"
FRONT_END_KEY = "spectrogram_config"
LABEL_MAP_KEY = "label_map"
WINDOWS_KEY = "training_windows_s"  # the window lengths (s) of the training split: export checks a bundle's against it


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def unreadable(error: Exception) -> str:
    """Why torch.load(weights_only=True) refused a file, in a few words; never torch's advice to load it with
    weights_only=False (which would run whatever code the file holds)."""
    import pickle
    import re

    text = str(error)
    code = re.search(r"GLOBAL (\S+)", text, flags=re.IGNORECASE)
    if code:
        return f"it holds {code.group(1)}, code or objects beyond weights, which are never loaded"
    if isinstance(error, pickle.UnpicklingError):
        return "not a PyTorch checkpoint, or a damaged one"
    if isinstance(error, EOFError) or "zip archive" in text:
        return "empty, truncated or damaged"
    if "weights_only" in text:
        return "it holds objects beyond weights, which are never loaded"
    return f"{type(error).__name__}: {_first_line(error)}"


def checked_path(path: str | Path, what: str) -> Path:
    """path as a Path if it is a readable file, else an InputError naming it (an over-long name included)."""
    path = Path(path)
    try:
        found = path.is_file()
    except OSError as error:
        raise InputError(f"{path}: {what} cannot be opened ({error.strerror})") from error
    if not found:
        raise InputError(f"{path}: {missing_file(path, what)}")
    return path


def load_checkpoint(path: str | Path, what: str = "checkpoint") -> dict:
    """The checkpoint's contents, read without running any code from the file."""
    path = checked_path(path, what)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any failure to read means: not a checkpoint we can trust
        raise InputError(f"{path}: not a {what} this project can read ({unreadable(error)}); pass a .ckpt "
                         "written by `mgc fit`") from error
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise InputError(f"{path}: not a {what} of this project (no state_dict); pass a .ckpt written by `mgc fit`")
    return checkpoint


def class_path(module: type) -> str:
    return f"{module.__module__}.{module.__qualname__}"


def check_model_class(path: str | Path, checkpoint: dict, expected: str | None, what: str) -> None:
    """A checkpoint written by `mgc fit` names its model class (a class path); another class than `expected` is
    refused."""
    stored = (checkpoint.get("hyper_parameters") or {}).get("_class_path")
    if stored and expected and stored != expected:
        raise InputError(f"{path}: a {stored.rsplit('.', 1)[-1]} checkpoint, not a {expected.rsplit('.', 1)[-1]} "
                         f"one; pass the {what}")


def load_module(module: type[Module], path: str | Path, what: str, map_location: str | torch.device = "cpu") -> Module:
    """module.load_from_checkpoint(path) after the safe read and the class check; weights that do not fit the model
    its own settings build become an InputError too."""
    checkpoint = load_checkpoint(path, what)
    check_model_class(path, checkpoint, class_path(module), what)
    try:
        return module.load_from_checkpoint(path, map_location=map_location, weights_only=True)
    except (TypeError, KeyError, RuntimeError) as error:
        raise InputError(f"{path}: does not fit a {module.__name__} ({_first_line(error)}); pass the {what}") \
            from error
