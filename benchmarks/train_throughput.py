"""Training throughput of the Lightning fit loop against a bare PyTorch loop, same model, batch and data.

For a baseline (spectrogram encoder only) and MGC with cross-attention fusion, both loops train the same
ClassifierModule network on the same in-memory batches (no disk I/O, so the loop itself is measured); the first
steps are warm-up and not timed. The Lightning loop includes everything a real run does per step (metric updates,
logging, the schedule); the bare loop is forward, loss, backward, optimiser step. Goal: ratio >= 0.9.

    python benchmarks/train_throughput.py                                   # CPU defaults: resnet18, 128 px
    python benchmarks/train_throughput.py --backbone resnet50 --image-size 224 --batch-size 128 --steps 60   # GPU
"""

from __future__ import annotations

import argparse
import time

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from mgc_lightning.models.classifier import ClassifierModule


class InMemoryWindows(Dataset):
    def __init__(self, count: int, size: int):
        generator = torch.Generator().manual_seed(0)
        self.images = torch.rand(count, 1, size, size, generator=generator)
        self.masks = (torch.rand(count, 1, size, size, generator=generator) > 0.9).float()
        self.joint = torch.randint(0, 8, (count,), generator=generator)

    def __len__(self) -> int:
        return len(self.joint)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "mask": self.masks[index], "joint": self.joint[index]}


class StepTimer(L.Callback):
    """Wall time from the end of the warm-up steps to the end of the last step."""

    def __init__(self, warmup: int):
        self.warmup, self.started, self.finished, self.timed_steps = warmup, 0.0, 0.0, 0

    def on_train_batch_end(self, trainer, *args) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        step = trainer.global_step
        if step == self.warmup:
            self.started = time.perf_counter()
        elif step > self.warmup:
            self.finished, self.timed_steps = time.perf_counter(), step - self.warmup


def lightning_rate(model_args: dict, loader: DataLoader, steps: int, warmup: int, precision: str) -> float:
    timer = StepTimer(warmup)
    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[timer], precision=precision, num_sanity_val_steps=0,
                        limit_val_batches=0, accelerator="auto", devices=1)
    trainer.fit(ClassifierModule(**model_args), train_dataloaders=loader)
    return timer.timed_steps * loader.batch_size / (timer.finished - timer.started)


def bare_rate(model_args: dict, loader: DataLoader, steps: int, warmup: int, precision: str) -> float:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = ClassifierModule(**model_args).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=model_args.get("lr", 3e-4), weight_decay=0.05)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=precision.startswith("bf16"))
    uses_mask = model_args["mask_input"] != "none"
    step, started, batches = 0, 0.0, iter(())
    while step < steps:
        batch = next(batches, None)
        if batch is None:
            batches = iter(loader)
            continue
        image, joint = batch["image"].to(device, non_blocking=True), batch["joint"].to(device, non_blocking=True)
        mask = batch["mask"].to(device, non_blocking=True) if uses_mask else None
        with autocast:
            loss = F.cross_entropy(model(image, mask), joint)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if device == "cuda":
            torch.cuda.synchronize()
        if step == warmup:
            started = time.perf_counter()
    return (steps - warmup) * loader.batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    gpu = torch.cuda.is_available()
    precision = "bf16-mixed" if gpu else "32-true"
    device = torch.cuda.get_device_name() if gpu else f"CPU ({torch.get_num_threads()} threads)"
    loader = DataLoader(InMemoryWindows(args.batch_size * 8, args.image_size), batch_size=args.batch_size,
                        shuffle=True, drop_last=True, pin_memory=gpu)
    print(f"device: {device}; {args.backbone}, {args.image_size} px, batch {args.batch_size}, {precision}, "
          f"{args.steps - args.warmup} timed steps after {args.warmup} warm-up")
    for label, extra in (("baseline", {"mask_input": "none"}), ("MGC xattn", {"mask_input": "soft", "fusion": "xattn"})):
        model_args = {"backbone": args.backbone, "image_size": args.image_size, **extra}
        bare = bare_rate(model_args, loader, args.steps, args.warmup, precision)
        lightning = lightning_rate(model_args, loader, args.steps, args.warmup, precision)
        print(f"{label:<10} bare PyTorch {bare:8.1f} samples/s | Lightning fit {lightning:8.1f} samples/s | "
              f"ratio {lightning / bare:.3f}")


if __name__ == "__main__":
    main()
