"""What every network sees: spectrogram images repeated to 3 channels with ImageNet normalisation (as in the paper),
and local pretrained weights (nothing is ever downloaded)."""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_input(image: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) image in [0, 1] -> (B, 3, H, W) normalised as ImageNet-trained encoders expect."""
    mean, std = _imagenet_constants(image.device, image.dtype)
    return (image.expand(-1, 3, -1, -1) - mean) / std


@functools.cache
def _imagenet_constants(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std as (1, 3, 1, 1) tensors, made once per device and type: copying constants to a GPU in every
    forward waits for the GPU to finish its queued work (a host synchronisation per step)."""
    return (torch.tensor(IMAGENET_MEAN, device=device, dtype=dtype).view(1, 3, 1, 1),
            torch.tensor(IMAGENET_STD, device=device, dtype=dtype).view(1, 3, 1, 1))


def load_local_weights(module: nn.Module, path: str | Path) -> None:
    """Load pretrained weights from a local file into `module` (matching keys only), with errors that say what to do."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights file {path} not found. mgc-lightning never downloads weights: download them on a "
            "machine with internet access (e.g. the timm or torchvision checkpoint of this encoder) and pass the "
            "file's path, or leave pretrained_path empty to train from scratch"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # weights only, on purpose: a crafted file's code never runs
        from ..core.checkpoints import unreadable

        raise ValueError(f"{path}: not a pretrained weights file this project can read ({unreadable(error)})") \
            from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    own = module.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ValueError(f"{path}: none of its {len(state)} tensors matches the encoder's parameters")
    module.load_state_dict(usable, strict=False)



def without_weight_sources(checkpoint: dict, cleared: dict[str, object]) -> None:
    """Make a checkpoint being saved self-contained (call from `on_save_checkpoint`).

    The construction arguments that read weights from elsewhere (a pretrained file, the hub, another checkpoint) are
    saved with the values in `cleared`, so that whatever rebuilds the model from the checkpoint's hyperparameters
    (`load_from_checkpoint`, and `mgc test` / resume through `--ckpt_path`, where LightningCLI applies them over the
    config) never reads those files again: the checkpoint's own weights replace them anyway. Where training started
    stays in the run's config in MLflow. Fresh construction is unchanged.
    """
    checkpoint["hyper_parameters"].update(cleared)
