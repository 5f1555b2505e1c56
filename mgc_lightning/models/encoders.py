"""The two branches of MGC: a timm spectrogram encoder (any CNN or ViT, as spatial tokens) and a light CNN mask
encoder, both projected to one latent width so the fusion modules can combine them."""

from __future__ import annotations

import timm
import torch
from torch import nn

from .inputs import imagenet_input


class SpectrogramEncoder(nn.Module):
    """timm backbone by name -> (B, tokens, dim) projected spatial features.

    CNN feature maps become one token per position; ViT/DeiT keep their patch tokens (class and distillation tokens
    dropped). Built from scratch unless a local weights file is given; `pretrained=True` asks timm's hub and turns
    an offline failure into a message that says how to use a local file.
    """

    def __init__(self, name: str, dim: int, image_size: int, pretrained: bool = False,
                 pretrained_path: str | None = None, backbone_kwargs: dict | None = None):
        super().__init__()
        # forward_features is used: no pooling, no classifier. backbone_kwargs reach the timm constructor, e.g.
        # {"channels": [16, 32, 64, 128], "stem_width": 16} for a ResNet 4x narrower (5x faster on a CPU).
        kwargs = {**(backbone_kwargs or {}), "num_classes": 0}
        if any(name.startswith(prefix) for prefix in ("vit", "deit")):
            kwargs["img_size"] = image_size
        if pretrained_path:
            from pathlib import Path

            if not Path(pretrained_path).is_file():
                raise FileNotFoundError(
                    f"pretrained weights file {pretrained_path} not found. mgc-lightning never downloads weights: "
                    f"fetch the timm checkpoint of {name} on a connected machine and pass its path as pretrained_path")
            kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(pretrained_path)})
        else:
            kwargs["pretrained"] = pretrained
        try:
            self.backbone = timm.create_model(name, **kwargs)
        except OSError as error:  # huggingface_hub's LocalEntryNotFoundError when offline
            raise RuntimeError(
                f"could not fetch pretrained weights for {name!r} ({type(error).__name__}); this machine is offline or "
                "has no hub access. Download the weights elsewhere and set pretrained_path to the local file, or set "
                "pretrained: false to train from scratch") from error
        # channels_last runs convolutions 1.5-2x faster on CPUs and tensor cores; transformers are unaffected
        self.backbone.to(memory_format=torch.channels_last)
        self.prefix_tokens = getattr(self.backbone, "num_prefix_tokens", 0)
        self.project = nn.Linear(self.backbone.num_features, dim)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        image = imagenet_input(image).contiguous(memory_format=torch.channels_last)
        features = self.backbone.forward_features(image)
        if features.dim() == 4:  # CNN: (B, C, H, W) -> (B, H*W, C)
            tokens = features.flatten(2).transpose(1, 2)
        else:  # transformer: (B, prefix + N, C)
            tokens = features[:, self.prefix_tokens :]
        return self.project(tokens)


class MaskEncoder(nn.Module):
    """A light CNN: four stride-2 conv blocks over the 1-channel mask -> (B, tokens, dim) at 1/16 resolution."""

    def __init__(self, dim: int, channels: tuple[int, ...] = (16, 32, 64, 128)):
        super().__init__()
        layers, previous = [], 1
        for width in channels:
            layers += [nn.Conv2d(previous, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            previous = width
        self.features = nn.Sequential(*layers)
        self.project = nn.Linear(previous, dim)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        return self.project(self.features(mask).flatten(2).transpose(1, 2))
