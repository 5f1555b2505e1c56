"""The two branches of MGC: a timm spectrogram encoder (any CNN or ViT, as spatial tokens) and a light CNN mask
encoder, both projected to one latent width so the fusion modules can combine them. Each returns its tokens with the
(rows, cols) grid they came from, so their time-frequency positions can travel with them (`with_positions`)."""

from __future__ import annotations

import math
from pathlib import Path

import timm
import torch
from torch import nn

from ..core.errors import InputError
from .inputs import imagenet_input

Grid = tuple[int, int]
"""(rows, cols) of a token set, row-major; row 0 is the highest frequency, like the spectrogram image."""

FINEST_GRID = 64
"""The encoding's slowest sinusoid turns half a period over the whole axis (so no two places look alike), its fastest
half a period per 1/FINEST_GRID of the axis (finer than any token grid)."""


def grid_encoding(grid: Grid, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """(rows * cols, dim) 2-D sinusoidal encoding of each cell centre in *normalised* coordinates (0..1), half of the
    channels for frequency (rows), half for time (cols). Normalised, so a 4 x 4 CNN grid and an 8 x 8 mask grid
    encode the same time-frequency spot alike and attention between them can match places."""
    if dim % 4:
        raise ValueError(f"dim must be a multiple of 4 for the 2-D positional encoding, got {dim}")
    pairs = dim // 4
    angular = math.pi * FINEST_GRID ** (torch.arange(pairs, device=device) / pairs)

    def axis(cells: int) -> torch.Tensor:
        phase = ((torch.arange(cells, device=device) + 0.5) / cells)[:, None] * angular
        return torch.cat([phase.sin(), phase.cos()], dim=-1)

    rows, cols = grid
    frequency, time = axis(rows), axis(cols)
    return torch.cat([frequency[:, None].expand(-1, cols, -1), time[None].expand(rows, -1, -1)], dim=-1).flatten(0, 1)


def with_positions(tokens: torch.Tensor, grid: Grid) -> torch.Tensor:
    """(B, rows * cols, dim) tokens plus the encoding of where each came from. Both encoders layer-normalise their
    tokens, so content and the unit-scale encoding weigh alike: neither drowns the other."""
    return tokens + grid_encoding(grid, tokens.shape[-1], tokens.device).to(tokens.dtype)


class SpectrogramEncoder(nn.Module):
    """timm backbone by name -> (B, tokens, dim) projected spatial features and their grid.

    CNN feature maps become one token per position; ViT/DeiT keep their patch tokens (class and distillation tokens
    dropped) on their square patch grid. Built from scratch unless a local weights file is given; `pretrained=True`
    without one is refused at once (nothing is downloaded, and a hub timeout would cost a minute before saying so).
    """

    def __init__(self, name: str, dim: int, image_size: int, pretrained: bool = False,
                 pretrained_path: str | None = None, backbone_kwargs: dict | None = None):
        super().__init__()
        # forward_features is used: no pooling, no classifier. backbone_kwargs reach the timm constructor, e.g.
        # {"channels": [16, 32, 64, 128], "stem_width": 16} for a ResNet 4x narrower (5x faster on a CPU).
        kwargs = {**(backbone_kwargs or {}), "num_classes": 0}
        if any(name.startswith(prefix) for prefix in ("vit", "deit")):
            kwargs["img_size"] = image_size
        if pretrained and not pretrained_path:
            raise InputError(
                f"pretrained: true for {name!r} without pretrained_path: mgc-lightning never downloads weights. Fetch "
                "the timm checkpoint on a connected machine and set pretrained_path to the local file, or set "
                "pretrained: false to train from scratch")
        if pretrained_path:
            if not Path(pretrained_path).is_file():
                raise FileNotFoundError(
                    f"pretrained weights file {pretrained_path} not found. mgc-lightning never downloads weights: "
                    f"fetch the timm checkpoint of {name} on a connected machine and pass its path as pretrained_path")
            kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(pretrained_path)})
        self.backbone = timm.create_model(name, **kwargs)
        # channels_last runs convolutions 1.5-2x faster on CPUs and tensor cores; transformers are unaffected
        self.backbone.to(memory_format=torch.channels_last)
        self.prefix_tokens = getattr(self.backbone, "num_prefix_tokens", 0)
        self.project = nn.Sequential(nn.Linear(self.backbone.num_features, dim), nn.LayerNorm(dim))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, Grid]:
        image = imagenet_input(image).contiguous(memory_format=torch.channels_last)
        features = self.backbone.forward_features(image)
        if features.dim() == 4:  # CNN: (B, C, H, W) -> (B, H*W, C)
            grid = (features.shape[2], features.shape[3])
            tokens = features.flatten(2).transpose(1, 2)
        else:  # transformer: (B, prefix + N, C), N patches of a square image
            tokens = features[:, self.prefix_tokens :]
            side = math.isqrt(tokens.shape[1])
            if side * side != tokens.shape[1]:
                raise ValueError(f"{tokens.shape[1]} patch tokens do not form a square grid")
            grid = (side, side)
        return self.project(tokens), grid


class MaskEncoder(nn.Module):
    """A light CNN: four stride-2 conv blocks over the 1-channel mask -> (B, tokens, dim) at 1/16 resolution and
    their grid."""

    def __init__(self, dim: int, channels: tuple[int, ...] = (16, 32, 64, 128)):
        super().__init__()
        layers, previous = [], 1
        for width in channels:
            layers += [nn.Conv2d(previous, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            previous = width
        self.features = nn.Sequential(*layers).to(memory_format=torch.channels_last)  # as the spectrogram encoder
        self.project = nn.Sequential(nn.Linear(previous, dim), nn.LayerNorm(dim))

    def forward(self, mask: torch.Tensor) -> tuple[torch.Tensor, Grid]:
        features = self.features(mask.contiguous(memory_format=torch.channels_last))
        return self.project(features.flatten(2).transpose(1, 2)), (features.shape[2], features.shape[3])
