"""Training entry point: LightningCLI over the YAML experiments, with MLflow tracking and exact resume.

`mgc fit --config experiments/X.yaml [--experiment-name NAME] [--ckpt_path PATH|last]`. Resuming restores weights,
optimizer, scheduler and epoch (Lightning) and continues the same MLflow run (the run id travels in the checkpoint).
`last` means the newest last.ckpt of a run with the same experiment and run name; a checkpoint of another model
configuration is refused before anything is written. `mgc test --ckpt_path PATH|best|last` tests a checkpoint in an
evaluation run of its own, linked to the training run, so the training run stays as it finished.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.model_helpers import is_overridden

from .tracking import (
    DATASET_TAG,
    EVALUATES_TAG,
    CheckpointMetadata,
    ConfigToMLflow,
    MLflowLogger,
    evaluation_run_settings,
    mlflow_client,
    read_checkpoint_metadata,
    where_to_find,
)

CHECKPOINT_ROOT = Path("checkpoints")
# Model settings that may differ between a checkpoint and the config that resumes or tests it: they do not change
# what the weights mean (optimiser settings, where the first weights came from).
FREE_SETTINGS = {"lr", "weight_decay", "pretrained", "pretrained_path", "init_from"}


def find_checkpoint(root: Path, experiment: str, run_name: str | None, which: str = "last") -> Path:
    """The newest `last.ckpt` (which="last") or best checkpoint (which="best") of the runs of one MLflow experiment
    with this run name (any name when None): never another experiment's or another model's."""
    client = mlflow_client()
    found = client.get_experiment_by_name(experiment)
    named = f" named {run_name!r}" if run_name else ""
    if found is None:
        raise FileNotFoundError(f"no MLflow experiment {experiment!r} yet, so no {which} checkpoint to resume or test; "
                                "pass the checkpoint path to --ckpt_path")
    query = f"tags.mlflow.runName = '{run_name}'" if run_name else ""
    runs = [r for r in client.search_runs([found.experiment_id], filter_string=query, max_results=10_000)
            if not r.data.tags.get(EVALUATES_TAG)]
    if which == "best":
        paths = [Path(r.data.tags["checkpoint/best"]) for r in runs if r.data.tags.get("checkpoint/best")]
    else:
        paths = [root / found.experiment_id / r.info.run_id / "checkpoints" / "last.ckpt" for r in runs]
    paths = [p for p in paths if p.is_file()]
    if not paths:
        raise FileNotFoundError(f"no {which} checkpoint of a run{named} of experiment {experiment!r} under {root}; "
                                "pass the checkpoint path to --ckpt_path")
    return max(paths, key=lambda p: p.stat().st_mtime)


def model_differences(checkpoint: str | Path, model_config) -> list[str]:
    """Model settings in which a checkpoint differs from the configured model (`class_path` + `init_args`), except
    FREE_SETTINGS; empty when the checkpoint's weights fit this configuration."""
    stored = torch.load(checkpoint, map_location="cpu", weights_only=True).get("hyper_parameters") or {}
    wanted = dict(model_config.get("init_args") or {})
    differences = []
    class_path = stored.get("_class_path")
    if class_path and class_path != model_config.get("class_path"):
        differences.append(f"model {class_path} there, {model_config.get('class_path')} here")
    for key in sorted(set(stored) & set(wanted) - FREE_SETTINGS):
        if key.startswith("_"):
            continue
        there, here = _plain(stored[key]), _plain(wanted[key])
        if there != here:
            differences.append(f"{key} {there!r} there, {here!r} here")
    return differences


def _plain(value):
    """Compare tuples as lists and mappings (jsonargparse Namespaces included) as dicts."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _logger_args(config):
    """init_args of the configured MLflow logger (the first one), or None."""
    logger = config["trainer"].get("logger")
    logger = logger[0] if isinstance(logger, list) else logger
    return getattr(logger, "init_args", None) if logger is not None else None


class MGCLightningCLI(LightningCLI):
    """LightningCLI that resolves `--ckpt_path last|best` within the experiment and run name, refuses a checkpoint of
    another model configuration, continues the checkpoint's MLflow run when resuming, tests in a linked evaluation
    run, tests the best checkpoint after every fit of a model that has a test step, and says where the run is."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--experiment-name", type=str | None, default=None,
                            help="MLflow experiment of the run (default: the logger's experiment_name in the YAML); "
                                 "give your own data its own experiment")
        parser.add_argument("--link-best", type=str | None, default=None,
                            help="after fit, make this path a link to the best checkpoint (a stable file for make)")

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        config = self.config[self.config["subcommand"]]
        logger = _logger_args(config)
        if config.get("experiment_name") and logger is not None:
            logger["experiment_name"] = config["experiment_name"]
        ckpt = config.get("ckpt_path")
        if not ckpt:
            return
        if ckpt in ("last", "best"):
            if ckpt == "best" and self.config["subcommand"] == "fit":
                raise ValueError("--ckpt_path best resumes nothing: training continues from `last` or a path")
            root = Path(config["trainer"].get("default_root_dir") or CHECKPOINT_ROOT)
            experiment = logger.get("experiment_name") if logger is not None else None
            run_name = logger.get("run_name") if logger is not None else None
            if experiment is None:
                raise ValueError(f"--ckpt_path {ckpt} needs an MLflow logger with an experiment_name")
            config["ckpt_path"] = ckpt = str(find_checkpoint(root, experiment, run_name, ckpt))
        if not Path(ckpt).is_file():
            raise FileNotFoundError(f"{ckpt}: checkpoint not found")
        differences = model_differences(ckpt, config["model"])
        if differences:
            raise ValueError(f"{ckpt} holds another model than this config ({'; '.join(differences)}): pass that "
                             "model's config, or a checkpoint of this one")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        logger = _logger_args(config)
        if logger is None:
            return
        manifest = (config["data"].get("init_args") or {}).get("manifest") if config.get("data") else None
        if manifest:
            logger["tags"] = {**(logger.get("tags") or {}), DATASET_TAG: str(Path(manifest).resolve())}
        if not config.get("ckpt_path"):
            return
        run_id = read_checkpoint_metadata(config["ckpt_path"])["mlflow_run_id"]
        if not run_id:
            return
        if self.subcommand == "fit":
            logger["run_id"] = run_id
        else:
            preset = config["data"]["init_args"].get("preset", "origin")
            settings = evaluation_run_settings(run_id, manifest, preset)
            if config.get("experiment_name"):
                settings["experiment_name"] = config["experiment_name"]
            for key, value in settings.items():
                logger[key] = value

    def after_fit(self) -> None:
        datamodule = self.datamodule
        has_test_data = datamodule is not None and len(getattr(datamodule, "datasets", {}).get("test", ())) > 0
        if has_test_data and is_overridden("test_step", self.model) and not self.trainer.fast_dev_run:
            self.trainer.test(self.model, datamodule=datamodule, ckpt_path="best")
        callback = self.trainer.checkpoint_callback
        link = self.config[self.subcommand].get("link_best")
        if link and callback is not None and callback.best_model_path and self.trainer.is_global_zero:
            link_atomically(Path(callback.best_model_path), Path(link))
        self._say_where(Path(callback.dirpath) if callback is not None else None)

    def after_test(self) -> None:
        ckpt = self.config[self.subcommand].get("ckpt_path")
        self._say_where(Path(ckpt).parent if ckpt else None)

    def _say_where(self, checkpoints: Path | None) -> None:
        if self.trainer.is_global_zero and isinstance(self.trainer.logger, MLflowLogger):
            print(where_to_find(self.trainer.logger.run_id, checkpoints))


def link_atomically(target: Path, link: Path) -> None:
    """Point `link` at `target` (absolute), replacing any earlier link in one step."""
    link.parent.mkdir(parents=True, exist_ok=True)
    temporary = link.with_name(f".{link.name}.{os.getpid()}")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(target.resolve())
    os.replace(temporary, link)


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
