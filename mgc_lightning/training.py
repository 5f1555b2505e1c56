"""Training entry point: LightningCLI over the YAML experiments, with MLflow tracking and exact resume.

`mgc fit --config experiments/X.yaml [--ckpt_path PATH|last]`. Resuming restores weights, optimizer, scheduler and
epoch (Lightning) and continues the same MLflow run (the run id travels in the checkpoint). `last` means the newest
last.ckpt of the same MLflow experiment under the checkpoint root. `mgc test --ckpt_path PATH` logs into the run
that trained the checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities.model_helpers import is_overridden

from .tracking import CheckpointMetadata, ConfigToMLflow, MLflowLogger, read_checkpoint_metadata

CHECKPOINT_ROOT = Path("checkpoints")


def newest_last_checkpoint(root: Path, experiment: str | None = None) -> Path:
    """The most recently written last.ckpt under root (optionally only of one MLflow experiment's runs)."""
    candidates = sorted(root.glob("**/last.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    for candidate in candidates:
        if experiment is None or candidate.parts[len(root.parts)] == experiment:
            return candidate
    raise FileNotFoundError(f"no last.ckpt under {root}{' for experiment ' + experiment if experiment else ''}; "
                            "pass the checkpoint path to --ckpt_path")


class MGCLightningCLI(LightningCLI):
    """LightningCLI that resolves `--ckpt_path last`, logs into the checkpoint's MLflow run when resuming or
    testing, and tests the best checkpoint after every fit of a model that has a test step."""

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        if not config.get("ckpt_path"):
            return
        logger = config["trainer"].get("logger")
        logger_config = logger[0] if isinstance(logger, list) else logger
        experiment = None
        if logger_config is not None and getattr(logger_config, "init_args", None) is not None:
            experiment = logger_config.init_args.get("experiment_name")
        if config["ckpt_path"] == "last":
            root = Path(config["trainer"].get("default_root_dir") or CHECKPOINT_ROOT)
            experiment_id = _experiment_id(experiment) if experiment else None
            config["ckpt_path"] = str(newest_last_checkpoint(root, experiment_id))
        run_id = read_checkpoint_metadata(config["ckpt_path"])["mlflow_run_id"]
        if run_id and logger_config is not None and getattr(logger_config, "init_args", None) is not None:
            logger_config.init_args["run_id"] = run_id


    def after_fit(self) -> None:
        datamodule = self.datamodule
        has_test_data = datamodule is not None and len(getattr(datamodule, "datasets", {}).get("test", ())) > 0
        if has_test_data and is_overridden("test_step", self.model) and not self.trainer.fast_dev_run:
            self.trainer.test(self.model, datamodule=datamodule, ckpt_path="best")


def _experiment_id(name: str) -> str | None:
    from mlflow.tracking import MlflowClient

    from .tracking import default_tracking_uri

    experiment = MlflowClient(default_tracking_uri()).get_experiment_by_name(name)
    return experiment.experiment_id if experiment else None


def run_lightning(args: list[str] | None) -> MGCLightningCLI:
    return MGCLightningCLI(
        save_config_callback=ConfigToMLflow,
        save_config_kwargs={"save_to_log_dir": False},
        trainer_defaults={
            "callbacks": [CheckpointMetadata()],
            "default_root_dir": str(CHECKPOINT_ROOT),
            "logger": {"class_path": f"{MLflowLogger.__module__}.{MLflowLogger.__qualname__}"},
        },
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
    )
