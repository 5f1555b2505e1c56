"""A bundle as one torch module: waveforms of windows -> calibrated probabilities and the band the masks cover (per
sound type, the band and time extent of each type's own mask, with a typed segmenter).

It computes exactly what training saw: the same front end, images rounded to float16 as the spectrogram cache stores
them, the segmenter's probability maps rounded as the mask cache stores them, and the classifier's mask made of them
as its mask kind says (masks.ops.mask_of_kind, the data modules' rule).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..core.labels import NUM_JOINT_CLASSES, NUM_SOUND_TYPES
from ..frontend.spectrogram import SpectrogramConfig, SpectrogramTransform
from ..masks.ops import binary_mask, mask_extents, mask_of_kind
from ..models.metrics import joint_to_vectors
from .bundle import Bundle


def joint_probabilities(type_probabilities: torch.Tensor) -> torch.Tensor:
    """(B, 3) independent per-type probabilities -> (B, 8) probability of each joint class."""
    bits = joint_to_vectors(torch.arange(NUM_JOINT_CLASSES, device=type_probabilities.device)).to(
        type_probabilities.dtype)  # (8, 3)
    p = type_probabilities[:, None, :]
    return (bits * p + (1 - bits) * (1 - p)).prod(dim=-1)


def type_probabilities(joint: torch.Tensor) -> torch.Tensor:
    """(B, 8) joint-class probabilities -> (B, 3) probability that each sound type is present."""
    bits = joint_to_vectors(torch.arange(NUM_JOINT_CLASSES, device=joint.device)).to(joint.dtype)
    return joint @ bits


def fold_batch_norms(module: nn.Module) -> int:
    """Fold every BatchNorm2d that directly follows a Conv2d among a module's children (the order the usual conv-bn
    blocks register them in) into that convolution, for inference: a quarter of the classifier's CPU time was batch
    norm. Returns how many were folded; the caller checks the outputs did not change."""
    folded = 0
    for parent in module.modules():
        names = list(parent._modules)
        for first, second in zip(names, names[1:]):
            conv, norm = parent._modules[first], parent._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and norm.track_running_stats:
                parent._modules[first] = fuse_conv_bn_eval(conv, norm)
                parent._modules[second] = nn.Identity()
                folded += 1
    return folded


class BundlePipeline(nn.Module):
    """Front end, segmenter (if any) and classifier of a bundle, in evaluation mode."""

    def __init__(self, bundle: Bundle):
        from ..models.classifier import ClassifierModule
        from ..models.segmenter import SegmenterModule

        super().__init__()
        self.bundle = bundle
        self.front_end = SpectrogramTransform(bundle.front_end)
        self.classifier = ClassifierModule(**bundle.classifier)
        self.classifier.load_state_dict(bundle.classifier_state)
        self.classifier.eval()
        self._fold_classifier_batch_norms()
        self.segmenter = None
        if bundle.segmenter is not None:
            self.segmenter = SegmenterModule(**bundle.segmenter)
            self.segmenter.load_state_dict(bundle.segmenter_state)
        self.multiclass = bundle.classifier.get("head", "multiclass") == "multiclass"
        self.eval()

    @torch.no_grad()
    def _fold_classifier_batch_norms(self) -> None:
        """Folded only where the logits stay what `mgc test` computes (to 1e-5 on random windows); else unfolded."""
        generator = torch.Generator().manual_seed(0)  # not the caller's random state
        size = (2, 1, self.bundle.front_end.height, self.bundle.front_end.width)
        image = torch.rand(size, generator=generator)
        mask = torch.rand(size, generator=generator) if self.classifier.uses_mask else None
        before = self.classifier(image, mask)
        folded = copy.deepcopy(self.classifier)
        if fold_batch_norms(folded) and torch.allclose(folded(image, mask), before, rtol=1e-5, atol=1e-5):
            self.classifier = folded

    def images(self, waves: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, 1, H, W) images as the cache holds them (float16 values), in float32 even under a
        GPU's bf16 autocast: the cache computed them so."""
        with torch.autocast(waves.device.type, enabled=False):
            return self.front_end(waves.float()).half().float()[:, None]

    def masks(self, images: torch.Tensor) -> torch.Tensor | None:
        """(B, 1, H, W) probability maps the segmenter draws ((B, 3, H, W), one per sound type, from a typed one),
        or None without a segmenter."""
        if self.segmenter is None:
            return None
        return self.segmenter.mask_probabilities(images)

    def classifier_mask(self, probability: torch.Tensor | None) -> torch.Tensor | None:
        """The classifier's mask of the bundle's kind, made of the segmenter's probability maps (their union: the
        largest probability of a pixel, as `mgc masks predict` stores it)."""
        if probability is None or not self.classifier.uses_mask:
            return None
        return mask_of_kind(probability.amax(dim=1, keepdim=True), self.bundle.mask_kind, self.bundle.soft_sigma)

    @torch.no_grad()
    def logits(self, waves: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raw classifier outputs and the segmenter's probability maps (`masks`), for (B, samples) windows."""
        images = self.images(waves)
        probability = self.masks(images)
        return self.classifier(images, self.classifier_mask(probability)), probability

    def calibrated(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-type probabilities (B, 3), joint-class probabilities (B, 8)) with the bundle's calibration."""
        if self.multiclass:
            joint = torch.softmax(logits / self.bundle.temperature, dim=-1)
            return type_probabilities(joint), joint
        platt = self.bundle.platt or [[1.0, 0.0]] * NUM_SOUND_TYPES
        scale, offset = torch.tensor(platt, dtype=logits.dtype, device=logits.device).unbind(dim=-1)
        types = torch.sigmoid(logits * scale + offset)
        return types, joint_probabilities(types)

    def mask_bands(self, probability: torch.Tensor | None, count: int) -> list[tuple[float, float] | None]:
        """(low Hz, high Hz) of the rows each of `count` windows' binary masks (their union, from a typed segmenter)
        cover; None where a mask is empty or there is no segmenter."""
        if probability is None:
            return [None] * count
        return [None if extent is None else extent[:2]
                for extent in self._extents(binary_mask(probability.amax(dim=1)))]

    def type_extents(self, probability: torch.Tensor) -> list[list[tuple[float, float, float, float] | None]]:
        """A typed segmenter's (B, 3, H, W) maps -> per window, per sound type, (low Hz, high Hz, begin s, end s) of
        the rows and columns its binary mask covers (times from the window's start); None where it is empty."""
        per_type = [self._extents(binary_mask(maps)) for maps in probability.unbind(dim=1)]
        return [list(window) for window in zip(*per_type)]

    def _extents(self, masks: torch.Tensor) -> list[tuple[float, float, float, float] | None]:
        return mask_extents(masks, self.bundle.front_end, self.bundle.window_s)

