"""The optimiser every model uses: AdamW, linear warm-up, cosine decay to the end of the planned training.

The schedule reads the trainer's planned step count when it is evaluated, not when it is built, so resuming with
a larger max_epochs stretches the remaining decay instead of failing (as a one-cycle schedule would).
"""

from __future__ import annotations

import math

import lightning as L
import torch

WARMUP_FRACTION = 0.05


def adamw_warmup_cosine(module: L.LightningModule, lr: float, weight_decay: float) -> dict:
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    plan: dict[str, int] = {}  # read once per fit: configure_optimizers runs again when a fit resumes

    def factor(step: int) -> float:
        if "total" not in plan:
            plan["total"] = max(int(module.trainer.estimated_stepping_batches), 1)
        total = plan["total"]
        warmup = max(int(WARMUP_FRACTION * total), 1)
        if step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return 0.5 * (1 + math.cos(math.pi * progress))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
