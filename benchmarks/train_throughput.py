"""Training throughput of the Lightning fit loop against a bare PyTorch loop, same model, batch and data, and of the
bare loop against a plain timm reference (the same backbone as a plain image classifier), measured in one run.

For a baseline (spectrogram encoder only) and MGC with cross-attention fusion, both loops train the same
ClassifierModule network on the same in-memory batches (no disk I/O, so the loop itself is measured); the first
steps are warm-up and not timed, and the GPU is synchronised only where timing starts and ends. The Lightning loop
includes everything a real run does per step (metric updates, logging, the schedule) at the trainer's defaults (bf16
autocast on a GPU); the bare loop is forward, loss, backward, optimiser step. The reference is timm's model alone on
3-channel batches already on the device, channels_last, the same precision. Goals: Lightning / bare >= 0.95, bare /
reference >= 0.8.

    python benchmarks/train_throughput.py                                   # CPU defaults: resnet18, 128 px
    python benchmarks/train_throughput.py --backbone resnet50 --image-size 224 --batch-size 128 --steps 60   # GPU
"""

from __future__ import annotations

import argparse
import json
import time

import lightning as L
import timm
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from mgc_lightning.models.classifier import ClassifierModule
from mgc_lightning.models.precision import device_defaults


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


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class StepTimer(L.Callback):
    """Wall time from the end of the warm-up steps to the end of the last step (the GPU synchronised at both)."""

    def __init__(self, warmup: int, steps: int):
        self.warmup, self.steps, self.started, self.finished = warmup, steps, 0.0, 0.0

    def on_train_batch_end(self, trainer, *args) -> None:
        step = trainer.global_step
        if step == self.warmup:
            synchronize()
            self.started = time.perf_counter()
        elif step == self.steps:
            synchronize()
            self.finished = time.perf_counter()


def lightning_rate(model_args: dict, loader: DataLoader, steps: int, warmup: int) -> float:
    timer = StepTimer(warmup, steps)
    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[timer], num_sanity_val_steps=0, limit_val_batches=0,
                        accelerator="auto", devices=1, **device_defaults())
    trainer.fit(ClassifierModule(**model_args), train_dataloaders=loader)
    return (steps - warmup) * loader.batch_size / (timer.finished - timer.started)


def _timed_loop(step_once, steps: int, warmup: int, batch_size: int) -> float:
    for step in range(1, steps + 1):
        step_once()
        if step == warmup:
            synchronize()
            started = time.perf_counter()
    synchronize()
    return (steps - warmup) * batch_size / (time.perf_counter() - started)


BF16 = device_defaults().get("precision") == "bf16-mixed"  # read once: it also sets global cuDNN / matmul options


def _autocast(device: str) -> torch.autocast:
    return torch.autocast(device, dtype=torch.bfloat16, enabled=BF16)


def bare_rate(model_args: dict, loader: DataLoader, steps: int, warmup: int) -> float:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = ClassifierModule(**model_args).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=model_args.get("lr", 3e-4), weight_decay=0.05)
    uses_mask = model_args["mask_input"] != "none"
    batches = iter(())

    def step_once() -> None:
        nonlocal batches
        batch = next(batches, None)
        if batch is None:
            batches = iter(loader)
            batch = next(batches)
        image, joint = batch["image"].to(device, non_blocking=True), batch["joint"].to(device, non_blocking=True)
        mask = batch["mask"].to(device, non_blocking=True) if uses_mask else None
        with _autocast(device):
            loss = F.cross_entropy(model(image, mask), joint)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return _timed_loop(step_once, steps, warmup, loader.batch_size)


def reference_rate(backbone: str, image_size: int, batch_size: int, steps: int, warmup: int) -> float:
    """Plain timm: the backbone as an 8-class image classifier on random 3-channel batches resident on the device."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    kwargs = {"img_size": image_size} if backbone.startswith(("vit", "deit")) else {}
    model = timm.create_model(backbone, num_classes=8, **kwargs).to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.05)
    images = torch.rand(batch_size, 3, image_size, image_size, device=device).contiguous(
        memory_format=torch.channels_last)
    targets = torch.randint(0, 8, (batch_size,), device=device)

    def step_once() -> None:
        with _autocast(device):
            loss = F.cross_entropy(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return _timed_loop(step_once, steps, warmup, batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--backbone-kwargs", default="{}", help="timm constructor arguments as JSON (smaller models)")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="torch.compile the ClassifierModule's encoders")
    parser.add_argument("--models", default="baseline,mgc", help="which of baseline, mgc to measure")
    args = parser.parse_args()
    if not 0 < args.warmup < args.steps:
        parser.error("need 0 < --warmup < --steps")
    gpu = torch.cuda.is_available()
    precision = device_defaults().get("precision", "32-true")
    device = torch.cuda.get_device_name() if gpu else f"CPU ({torch.get_num_threads()} threads)"
    loader = DataLoader(InMemoryWindows(args.batch_size * 8, args.image_size), batch_size=args.batch_size,
                        shuffle=True, drop_last=True, pin_memory=gpu)
    print(f"device: {device}; torch {torch.__version__}; {args.backbone}, {args.image_size} px, batch "
          f"{args.batch_size}, {precision}, {args.steps - args.warmup} timed steps after {args.warmup} warm-up"
          f"{', compiled' if args.compile else ''}")
    backbone_kwargs = json.loads(args.backbone_kwargs)
    reference = reference_rate(args.backbone, args.image_size, args.batch_size, args.steps, args.warmup) if not \
        backbone_kwargs else None
    print(f"{'reference':<10} plain timm {args.backbone} {reference:8.1f} samples/s" if reference else
          "reference: skipped (plain timm is measured at the backbone's own size, without --backbone-kwargs)")
    models = {"baseline": {"mask_input": "none"}, "mgc": {"mask_input": "soft", "fusion": "xattn"}}
    for label in args.models.split(","):
        model_args = {"backbone": args.backbone, "backbone_kwargs": backbone_kwargs, "image_size": args.image_size,
                      "compile": args.compile, **models[label]}
        bare = bare_rate(model_args, loader, args.steps, args.warmup)
        lightning = lightning_rate(model_args, loader, args.steps, args.warmup)
        versus_reference = f" | bare / reference {bare / reference:.3f}" if reference else ""
        print(f"{label:<10} bare PyTorch {bare:8.1f} samples/s | Lightning fit {lightning:8.1f} samples/s | "
              f"Lightning / bare {lightning / bare:.3f}{versus_reference}")


if __name__ == "__main__":
    main()
