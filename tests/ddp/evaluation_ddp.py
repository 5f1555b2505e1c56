"""Lightning's own Trainer on `devices` CPU processes (DDP over gloo when more than one), with the callbacks that write
every run's per-window predictions and intervals (evaluate.callbacks): with `--fit`, trains a tiny baseline for one
epoch first; then validates and tests WORKSPACE/checkpoints/last.ckpt. Rank 0 writes the returned metrics, the split
sizes and the MLflow run id to OUT.json.

usage: evaluation_ddp.py WORKSPACE DEVICES OUT.json [--fit]
(a one-process run may call main([WORKSPACE, "1", OUT.json]) in a test's own process: no rank re-runs it)
"""

import json
import sys
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from mgc_lightning.data.datamodules import ClassificationDataModule
from mgc_lightning.evaluate.callbacks import run_callbacks
from mgc_lightning.models.classifier import ClassifierModule
from mgc_lightning.train.tracking import MLflowLogger


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    workspace, devices, out = Path(argv[0]), int(argv[1]), Path(argv[2])
    L.seed_everything(0, verbose=False)
    data = ClassificationDataModule(str(workspace / "bench" / "manifest.csv"), cache_root=str(workspace / "cache"),
                                    batch_size=4, split_fractions=(0.5, 0.25, 0.25), split_seed=0)
    model = ClassifierModule(backbone="resnet18", dim=32, lr=1e-3,
                             backbone_kwargs={"channels": [8, 16, 32, 64], "stem_width": 8})
    logger = MLflowLogger(experiment_name="ddp", tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}")
    checkpoints = workspace / "checkpoints"
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto", max_epochs=1,
                        limit_train_batches=2, logger=logger, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[ModelCheckpoint(dirpath=checkpoints, save_last=True), *run_callbacks()],
                        num_sanity_val_steps=0)
    if "--fit" in argv:
        trainer.fit(model, datamodule=data)
    checkpoint = str(checkpoints / "last.ckpt")
    validated = trainer.validate(model, datamodule=data, ckpt_path=checkpoint, verbose=False)[0]
    tested = trainer.test(model, datamodule=data, ckpt_path=checkpoint, verbose=False)[0]
    if trainer.is_global_zero:
        out.write_text(json.dumps({"world": trainer.world_size, "run_id": logger.run_id,
                                   "val_windows": len(data.datasets["val"]), "test_windows": len(data.datasets["test"]),
                                   "validate": validated, "test": tested}))


if __name__ == "__main__":
    main()
