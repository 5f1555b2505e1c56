"""ClassifierModule: one LightningModule for image-only baselines and mask-guided classification (MGC).

mask_input "none" is the baseline (spectrogram encoder -> head). A mask kind ("binary", "soft" or "probability", see
masks.ops.mask_of_kind) adds the mask branch and a fusion, which gets both token sets with their time-frequency
positions encoded; the head always sees pooled spectrogram features plus the fused vector (residual path), as in the
paper. Metrics are logged here; per-window predictions, intervals and confusion matrices are published to the
trainer's callbacks (evaluate.callbacks writes them).
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from ..core.checkpoints import load_checkpoint
from ..core.errors import InputError
from ..core.labels import NUM_JOINT_CLASSES, NUM_SOUND_TYPES
from ..masks.ops import MASK_KINDS
from .encoders import MaskEncoder, SpectrogramEncoder, with_positions
from .fusion import FUSIONS
from .hooks import publish
from .inputs import without_weight_sources
from .metrics import EvaluatedWindows, JointAccuracy, joint_to_vectors, sound_type_scores
from .optim import adamw_warmup_cosine

MASK_INPUTS = ("none", *MASK_KINDS)
HEADS = {"multiclass": NUM_JOINT_CLASSES, "multilabel": NUM_SOUND_TYPES}


def _check_settings(mask_input: str, fusion: str, head: str, mask_dropout: float, image_dropout: float,
                    image_head_weight: float, dim: int) -> None:
    """Refuse a combination no model is built for, before anything is built."""
    if mask_input not in MASK_INPUTS:
        raise ValueError(f"mask_input must be one of {MASK_INPUTS}, got {mask_input!r}")
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {sorted(FUSIONS)}, got {fusion!r}")
    if head not in HEADS:
        raise ValueError(f"head must be one of {sorted(HEADS)}, got {head!r}")
    if not (0 <= mask_dropout < 1 and 0 <= image_dropout < 1 and mask_dropout + image_dropout < 1):
        raise ValueError(f"mask_dropout and image_dropout must be >= 0 with a sum below 1, got {mask_dropout} and "
                         f"{image_dropout}")
    if image_head_weight < 0:
        raise ValueError(f"image_head_weight must be >= 0, got {image_head_weight}")
    if image_head_weight and mask_input == "none":
        raise ValueError("image_head_weight needs a mask input (binary, soft or probability): a baseline's head "
                         "already sees the image alone")
    if image_dropout and mask_input == "none":
        raise ValueError("image_dropout needs a mask input (binary, soft or probability): a baseline would see nothing")
    if mask_input != "none" and dim % 4:
        raise ValueError(f"dim must be a multiple of 4 (the 2-D positional encoding), got {dim}")


class ClassifierModule(L.LightningModule):
    def __init__(
        self,
        backbone: str = "resnet18",
        backbone_kwargs: dict | None = None,
        mask_input: str = "none",
        fusion: str = "xattn",
        head: str = "multiclass",
        dim: int = 256,
        heads: int = 4,
        dropout: float = 0.1,
        mask_dropout: float = 0.0,
        image_dropout: float = 0.0,
        image_head_weight: float = 0.0,
        image_size: int = 128,
        threshold: float = 0.5,
        lr: float = 3e-4,
        weight_decay: float = 0.05,
        pretrained: bool = False,
        pretrained_path: str | None = None,
        init_from: str | None = None,
        compile: bool | str = False,
    ):
        """mask_dropout and image_dropout: shares of training windows on which the head sees the spectrogram path
        alone, or the mask alone (see `_modality_dropout`). image_head_weight: weight of a second loss in training,
        from a head that reads the spectrogram path alone: the fused head's mask route cannot starve the image
        encoder (the greedy learning of multi-modal networks; gradient blending, Wang et al. 2020); predictions
        come from the fused head only. compile: torch.compile the encoders and the fusion (minutes of compiling
        first; pays on long GPU runs); true uses torch's default backend (inductor), a string names another.
        Checkpoints are saved with compile false, so evaluating one does not compile again."""
        super().__init__()
        _check_settings(mask_input, fusion, head, mask_dropout, image_dropout, image_head_weight, dim)
        self.save_hyperparameters()
        self.spectrogram_encoder = SpectrogramEncoder(backbone, dim, image_size, pretrained, pretrained_path,
                                                      backbone_kwargs)
        self.uses_mask = mask_input != "none"
        if self.uses_mask:
            self.mask_encoder = MaskEncoder(dim)
            self.fusion = FUSIONS[fusion](dim, heads, dropout)
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Dropout(dropout), nn.Linear(dim, HEADS[head]))
        if image_head_weight:
            self.image_head = nn.Sequential(nn.LayerNorm(dim), nn.Dropout(dropout), nn.Linear(dim, HEADS[head]))
        # Training tracks joint accuracy only (cheap, no host syncs per step); validation and test keep every window
        # (each counted once under DDP, see metrics.py). Keys get a suffix because nn.Module has a `train` attribute.
        self.metrics = nn.ModuleDict({"train_metrics": JointAccuracy(threshold),
                                      "val_metrics": EvaluatedWindows(), "test_metrics": EvaluatedWindows()})
        if init_from:
            self._initialise_from(init_from)
        if compile:  # in place: parameter names (and so checkpoints) stay those of the eager modules
            for module in (self.spectrogram_encoder, *((self.mask_encoder, self.fusion) if self.uses_mask else ())):
                module.compile(**({"backend": compile} if isinstance(compile, str) else {}))

    def _initialise_from(self, path: str) -> None:
        """Weights-only start from another checkpoint (no optimiser, schedule or epoch: not a resume)."""
        state = load_checkpoint(path, "checkpoint for init_from")["state_dict"]
        own = self.state_dict()
        misfits = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
        if misfits:
            raise InputError(f"{path}: {len(misfits)} weights of this checkpoint for init_from have other shapes than "
                             f"this model's (first: {misfits[0]}): another backbone or size; pass a checkpoint of "
                             "the same backbone and dim")
        usable = {k: v for k, v in state.items() if k in own}
        if not usable:
            raise InputError(f"{path}: no weights of this checkpoint for init_from fit this model (another model or "
                             "size?); pass a checkpoint of the same backbone")
        self.load_state_dict(usable, strict=False)

    def forward(self, image: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self._features(image, mask)[1])

    def _features(self, image: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The pooled spectrogram features and what the head reads: those plus the fused mask guidance."""
        tokens, grid = self.spectrogram_encoder(image)
        features = tokens.mean(dim=1)
        if self.uses_mask:
            if mask is None:
                raise ValueError(f"this model was built with mask_input={self.hparams.mask_input!r} and needs a mask; "
                                 "set the data module's mask_source")
            keep_image, keep_mask = self._modality_dropout(len(tokens), tokens.device, tokens.dtype)
            mask_tokens, mask_grid = self.mask_encoder(mask)
            guidance = self.fusion(with_positions(tokens * keep_image[:, :, None], grid),
                                   with_positions(mask_tokens, mask_grid))
            return features, features * keep_image + guidance * keep_mask
        return features, features

    def _modality_dropout(self, size: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(size, 1) 0/1 weights of the image and the mask per training window (ones otherwise). Dropping the mask
        (mask_dropout) keeps the head from depending on masks entirely, so a wrong mask costs less; dropping the
        image (image_dropout: its pooled features, and its tokens down to their positions, so the fusion's queries
        still say where to look) makes the mask branch learn to classify on its own, which a network that can fit
        the training windows from the image alone never has to (the greedy learning of multi-modal networks)."""
        ones = torch.ones(size, 1, device=device, dtype=dtype)
        if not self.training or not (self.hparams.mask_dropout or self.hparams.image_dropout):
            return ones, ones
        draw = torch.rand(size, 1, device=device)  # one draw per window: never both dropped
        mask_dropped = draw < self.hparams.mask_dropout
        image_dropped = (draw >= self.hparams.mask_dropout) & (draw < self.hparams.mask_dropout + self.hparams.image_dropout)
        return (~image_dropped).to(dtype), (~mask_dropped).to(dtype)

    def setup(self, stage: str) -> None:
        data = getattr(self.trainer, "datamodule", None)
        if data is None or not hasattr(data, "mask_source"):
            return
        if self.uses_mask and (not data.mask_source or data.mask_kind != self.hparams.mask_input):
            raise ValueError(
                f"model mask_input={self.hparams.mask_input!r} but data gives mask_source={data.mask_source!r}, "
                f"mask_kind={data.mask_kind!r}: set data.mask_source and data.mask_kind={self.hparams.mask_input!r}")
        if not self.uses_mask and data.mask_source:
            raise ValueError("a baseline (mask_input='none') was given a mask source; drop data.mask_source")

    def _window_losses(self, logits: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
        """(N,) loss of each window; their mean is the batch loss."""
        if self.hparams.head == "multiclass":
            return F.cross_entropy(logits, joint, reduction="none")
        return F.binary_cross_entropy_with_logits(logits, joint_to_vectors(joint).float(), reduction="none").mean(-1)

    def _outputs(self, logits: torch.Tensor) -> torch.Tensor:
        return logits if self.hparams.head == "multiclass" else torch.sigmoid(logits)

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        image_features, features = self._features(batch["image"], batch.get("mask"))
        logits = self.head(features)
        loss = self._window_losses(logits, batch["joint"]).mean()
        if self.hparams.image_head_weight:
            image_loss = self._window_losses(self.image_head(image_features), batch["joint"]).mean()
            self.log("train/image_head_loss", image_loss, on_step=False, on_epoch=True, batch_size=len(logits))
            loss = loss + self.hparams.image_head_weight * image_loss
        self.metrics["train_metrics"].update(self._outputs(logits), batch["joint"])
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(logits))
        return loss

    def _evaluation_step(self, batch: dict, stage: str) -> None:
        """Keeps each window's outputs and loss; scores and loss are logged from all of them at the epoch's end."""
        logits = self(batch["image"], batch.get("mask"))
        self.metrics[f"{stage}_metrics"].update(batch["index"], batch["joint"], self._outputs(logits),
                                                self._window_losses(logits, batch["joint"]))

    def validation_step(self, batch: dict, batch_index: int) -> None:
        self._evaluation_step(batch, "val")

    def test_step(self, batch: dict, batch_index: int) -> None:
        self._evaluation_step(batch, "test")

    def _prefix(self, stage: str) -> str:
        """Test metrics carry the preset's name (test/origin/..., test/mel/...) so OOD results stay apart."""
        preset = getattr(getattr(self.trainer, "datamodule", None), "config", None)
        return f"test/{preset.name}" if stage == "test" and preset is not None else stage

    def _log_epoch(self, stage: str) -> None:
        """Scores of every window once, the same on every process (computed from all processes' windows)."""
        prefix = self._prefix(stage)
        metrics = self.metrics[f"{stage}_metrics"]
        windows = metrics.compute()
        scores = sound_type_scores(windows["outputs"], windows["joint"], self.hparams.threshold)
        joint_acc = scores.pop("joint_acc")
        self.log(f"{prefix}/loss", windows["loss"].mean(), prog_bar=stage != "test")
        self.log(f"{prefix}/joint_acc", joint_acc, prog_bar=True)
        self.log_dict({f"{prefix}/{name}": value for name, value in scores.items()})
        # every window's outputs to the trainer's writers (evaluate.callbacks: prediction tables, intervals, figures)
        publish(self, "on_windows_evaluated", stage=stage, prefix=prefix, windows=windows, joint_acc=joint_acc)
        metrics.reset()

    def on_train_epoch_end(self) -> None:
        train = self.metrics["train_metrics"]
        self.log("train/joint_acc", train.compute(), prog_bar=True)
        train.reset()

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._log_epoch("val")
        else:
            self.metrics["val_metrics"].reset()

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self):
        return adamw_warmup_cosine(self, self.hparams.lr, self.hparams.weight_decay)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Checkpoints load without init_from or the pretrained weights (see `without_weight_sources`), and eager."""
        without_weight_sources(checkpoint, {"pretrained": False, "pretrained_path": None, "init_from": None,
                                            "compile": False})
