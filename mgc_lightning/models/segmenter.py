"""SegmenterModule: a segmenter (DeepLabV3 as in the paper, or U-Net) trained few-shot on high-quality masks to draw
pseudo-attention masks: each pixel's probability of sound, from which come the `predicted` mask source and its
probability maps (masks.predict runs that job over a manifest). A typed segmenter draws one mask per sound type
(`predicted-typed`); the masks a classifier reads are their union."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torchmetrics.classification import BinaryJaccardIndex

from ..core.checkpoints import load_module
from ..core.labels import SOUND_TYPES
from ..masks.ops import mask_metrics
from .hooks import publish
from .inputs import imagenet_input, load_local_weights, without_weight_sources
from .optim import adamw_warmup_cosine
from .precision import inference_copy


def noise_standardized(image: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) images -> each row minus its median over time (its noise floor), in units of the image's median
    absolute deviation from those floors (its noise spread), through asinh.

    Front ends disagree on offsets (dB above the noise floor, dB below the peak), ranges, noise colour and intensity
    scale; measured from each row's floor in units of the noise's own spread, their images mostly agree, and any
    a * image + b (a > 0) gives exactly the same result. asinh keeps the noise linear and compresses the calls' tail,
    where a dB scale and PCEN's power-like one differ most.
    """
    residual = image - image.median(dim=-1, keepdim=True).values
    spread = residual.abs().flatten(1).median(dim=1).values.clamp_min(1e-6)
    return torch.asinh(residual / spread.view(-1, 1, 1, 1))


class SegmenterModule(L.LightningModule):
    """Pixel-wise 2-class cross-entropy (paper, appendix A.3), plus `dice_weight` times a soft Dice loss of the sound
    pixels; AdamW with warm-up and cosine decay; the few-shot set is
    doubled by horizontal flips in the data module.

    normalize_input: feed the network noise-standardised images (`noise_standardized`), so masks drawn on another
    front end than the training one hold up; false feeds the [0, 1] image with ImageNet normalisation, as the paper.
    network_kwargs: further arguments of the smp architecture (e.g. a U-Net's `decoder_channels`).
    typed: one output channel per sound type (labels.SOUND_TYPES), trained multi-label on per-type masks (mask source
    `ideal-typed`) with a per-channel binary cross-entropy (`sound_weight` weighs the sound pixels) plus `dice_weight`
    times a per-channel soft Dice loss: a pixel may belong to two types. Its sound probability is the largest of the
    types' (the union of their binary masks), so every reader of masks sees what an untyped segmenter gives it, and
    `mgc detect` draws each type's Raven box from that type's own mask.
    """

    def __init__(
        self,
        architecture: str = "DeepLabV3",
        encoder_name: str = "resnet18",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        pretrained_path: str | None = None,
        sound_weight: float = 1.0,
        dice_weight: float = 0.0,
        figure_every_n_epochs: int = 5,
        figure_windows: int = 4,
        soft_sigma: float = 3.0,
        normalize_input: bool = True,
        network_kwargs: dict | None = None,
        typed: bool = False,
    ):
        super().__init__()
        self._drawing_networks: dict[str, torch.nn.Module | None] = {}  # per device; plain dict: not in the state
        self.save_hyperparameters()
        # DeepLabV3 as in the paper; any smp architecture by name (DeepLabV3Plus and Unet keep thin clicks sharper).
        self.net = smp.create_model(architecture, encoder_name=encoder_name, encoder_weights=None, in_channels=3,
                                    classes=len(SOUND_TYPES) if typed else 2, **(network_kwargs or {}))
        if pretrained_path:
            load_local_weights(self.net.encoder, pretrained_path)
        # Class weights of the cross-entropy: sound pixels are a few percent of an image; > 1 counters that.
        self.register_buffer("class_weights", torch.tensor([1.0, sound_weight]), persistent=False)
        if dice_weight < 0:
            raise ValueError(f"dice_weight must be >= 0, got {dice_weight}")
        # A soft Dice loss of the sound pixels over the batch: it scores overlap, as IoU does, so a thin click line
        # missed by one pixel costs as much as a thick whistle missed by one, where cross-entropy counts pixels.
        mode = smp.losses.MULTILABEL_MODE if typed else smp.losses.MULTICLASS_MODE
        self.dice = smp.losses.DiceLoss(mode, classes=None if typed else [1], from_logits=True) if dice_weight else None
        self.val_metrics = mask_metrics(prefix="val/")  # of the union of the types' masks when typed
        self.val_type_iou = torch.nn.ModuleList(
            [BinaryJaccardIndex() for _ in SOUND_TYPES] if typed else [])
        self._figure_batch: dict | None = None

    def network_input(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) images in [0, 1] -> (B, 3, H, W) what the network sees."""
        if self.hparams.normalize_input:
            return noise_standardized(image).expand(-1, 3, -1, -1)
        return imagenet_input(image)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) images in [0, 1] -> (B, 2, H, W) logits (background, sound), or (B, 3, H, W) per-type
        logits when typed."""
        return self.net(self.network_input(image))

    @torch.no_grad()
    def sound_probability(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) images in [0, 1] -> (B, H, W) each pixel's probability of sound (the softmax of its two
        logits; typed: the largest type probability) in float32, rounded to float16 values as the
        `predicted-probability` source stores them, so that detection reads what training read; its binary mask is
        `masks.ops.binary_mask`."""
        return self.mask_probabilities(image).amax(dim=1)

    @torch.no_grad()
    def mask_probabilities(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) images -> (B, 1, H, W) sound probability, or (B, 3, H, W) each type's probability (sigmoid)
        when typed, rounded to float16 values. `mgc masks predict` and `mgc detect` both draw them so: in bfloat16
        where the hardware has it (`precision.inference_copy`, made once and dropped when the weights may change)."""
        key = str(image.device)
        if key not in self._drawing_networks:
            self._drawing_networks[key] = inference_copy(self.net, image.device)
        network, inputs = self._drawing_networks[key], self.network_input(image)
        if network is None:
            logits = self.net(inputs)
        else:
            logits = network(inputs.to(torch.bfloat16).contiguous(memory_format=torch.channels_last))
        probability = logits.float().sigmoid() if self.hparams.typed else logits.float().softmax(dim=1)[:, 1:]
        return probability.half().float()

    def train(self, mode: bool = True):
        self._drawing_networks.clear()  # training changes the weights the copies were made from
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):
        self._drawing_networks.clear()
        return super().load_state_dict(*args, **kwargs)

    def _target(self, mask: torch.Tensor) -> torch.Tensor:
        """A batch's (B, C, H, W) masks -> the loss's target: (B, H, W) class indices, or (B, 3, H, W) per-type 0/1
        when typed; masks of the other kind are refused, naming the mask source that fits."""
        channels = len(SOUND_TYPES) if self.hparams.typed else 1
        if mask.shape[1] != channels:
            wanted = ("per-type masks (3 channels, mask source ideal-typed)" if self.hparams.typed else
                      "one mask per window (mask source ideal, predicted, manifest, ...; typed: true reads ideal-typed)")
            raise ValueError(f"this segmenter (typed: {self.hparams.typed}) trains on {wanted}, got masks of "
                             f"{mask.shape[1]} channel(s)")
        return mask.float() if self.hparams.typed else mask[:, 0].long()

    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.hparams.typed:
            loss = F.binary_cross_entropy_with_logits(logits, target, pos_weight=self.class_weights[1])
        else:
            loss = F.cross_entropy(logits, target, weight=self.class_weights)
        return loss if self.dice is None else loss + self.hparams.dice_weight * self.dice(logits, target)

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        loss = self._loss(self(batch["image"]), self._target(batch["mask"]))
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(batch["image"]))
        return loss

    def validation_step(self, batch: dict, batch_index: int) -> None:
        logits, target = self(batch["image"]), self._target(batch["mask"])
        self.log("val/loss", self._loss(logits, target), prog_bar=True,
                 batch_size=len(target), sync_dist=True)
        if self.hparams.typed:
            for metric, typed_prediction, typed_target in zip(self.val_type_iou, (logits > 0).unbind(1),
                                                               target.bool().unbind(1)):
                metric.update(typed_prediction, typed_target)
            prediction, target = (logits > 0).any(dim=1).long(), target.bool().any(dim=1).long()
        else:
            prediction = logits.argmax(dim=1)
        self.val_metrics.update(prediction, target)
        if batch_index == 0:
            self._figure_batch = {"image": batch["image"][: self.hparams.figure_windows].cpu(),
                                  "target": target[: self.hparams.figure_windows].cpu(),
                                  "prediction": prediction[: self.hparams.figure_windows].cpu()}

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute(), prog_bar=True)
        self.val_metrics.reset()
        for sound_type, metric in zip(SOUND_TYPES, self.val_type_iou):
            self.log(f"val/iou_{sound_type}", metric.compute())
            metric.reset()
        if self._figure_batch:  # a few validation windows' images, target and predicted masks (evaluate.callbacks)
            publish(self, "on_masks_drawn", windows=self._figure_batch)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Checkpoints load without the pretrained weights file (see `without_weight_sources`)."""
        without_weight_sources(checkpoint, {"pretrained_path": None})

    def configure_optimizers(self):
        return adamw_warmup_cosine(self, self.hparams.lr, self.hparams.weight_decay)


def load_segmenter(checkpoint: str | Path, device: str | torch.device = "cpu") -> SegmenterModule:
    """A trained SegmenterModule (the checkpoint read safely and its class checked), in eval mode on `device`."""
    return load_module(SegmenterModule, checkpoint, "segmenter checkpoint", map_location=device).eval()
