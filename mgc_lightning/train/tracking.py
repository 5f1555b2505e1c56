"""MLflow tracking: a SQLite store at the repository root by default, the resolved config logged with every run,
and the run id stored in checkpoints so a resumed run keeps logging into the same MLflow run.

Runs are append-only facts: testing a checkpoint later (`mgc test`, `mgc evaluate`) makes an evaluation run of its
own, tagged with the training run it evaluates (and nested under it in the MLflow UI), and a later command that fails
never turns a finished run into a failed one."""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path
from typing import Any, Iterator

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only

from ..core.checkpoints import FRONT_END_KEY, LABEL_MAP_KEY, RUN_ID_KEY, WINDOWS_KEY, load_checkpoint
from ..core.interrupts import deferred, received
from ..core.labels import label_map
from ..core.mlflow_store import DATASET_TAG, EVALUATES_TAG, artifact_root, dataset_name, default_tracking_uri
from ..core.stopping import last_checkpoint

PRESET_TAG = "mgc.preset"  # the front-end preset an evaluation run rendered its windows with
PARENT_TAG = "mlflow.parentRunId"  # nests the evaluation run under its training run in the MLflow UI
INTERRUPTED_TAG = "mgc.interrupted"  # on a KILLED run: the signal that stopped it (SIGINT, SIGTERM)
# On a run of a checkpoint whose training run is in another MLflow store (copied from another machine, or another
# MLFLOW_TRACKING_URI): the checkpoint (resolved path) and the id of its run there
CHECKPOINT_TAG = "mgc.checkpoint"
ELSEWHERE_RUN_TAG = "mgc.checkpoint_run_elsewhere"


@contextlib.contextmanager
def _store_opened_in_turn(tracking_uri: str) -> Iterator[None]:
    """Every process of a DDP run opens the store, and those that start together (torchrun, SLURM, a cluster's
    nodes) would all create a new SQLite store's tables at once, all but one failing ("duplicate column name"): they
    take turns, each holding a lock on a file beside the database while it opens it."""
    if not tracking_uri.startswith("sqlite:///"):
        yield
        return
    database = Path(tracking_uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(f".{database.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


class MLflowLogger(MLFlowLogger):
    """Lightning's MLFlowLogger with the project's defaults: SQLite store, artifacts in mlartifacts beside it."""

    def __init__(
        self,
        experiment_name: str = "mgc",
        run_name: str | None = None,
        tracking_uri: str | None = None,
        tags: dict[str, Any] | None = None,
        run_id: str | None = None,
        artifact_location: str | None = None,
    ):
        uri = tracking_uri or default_tracking_uri()
        if artifact_location is None:
            artifact_location = artifact_root(uri)
        with _store_opened_in_turn(uri):  # its client creates a new store's tables
            super().__init__(experiment_name=experiment_name, run_name=run_name, tracking_uri=uri, tags=tags,
                             save_dir=None, artifact_location=artifact_location, run_id=run_id)

    @rank_zero_only
    def log_hyperparams(self, params) -> None:
        """Log only params the run does not have yet: MLflow params are immutable, and a run that is resumed or
        evaluated on another preset later must not fail on a param it logged at the start."""
        from lightning.fabric.utilities.logger import _convert_params, _flatten_dict

        with deferred():  # a signal lands after the store's transaction, never inside it
            existing = self.experiment.get_run(self.run_id).data.params
            fresh = {k: v for k, v in _flatten_dict(_convert_params(params)).items() if k not in existing}
            if fresh:
                super().log_hyperparams(fresh)

    @rank_zero_only
    def log_metrics(self, metrics, step=None) -> None:
        with deferred():  # as log_hyperparams
            super().log_metrics(metrics, step)

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        """A run stopped by SIGINT or SIGTERM is KILLED and tagged with the signal's name (mgc.interrupted). A run
        that had finished stays FINISHED when a later command on it (a resume) fails or is interrupted: the failure
        is recorded as a tag, the results it finished with still stand."""
        if status == "failed" and self._initialized:
            interruption = received()
            if interruption is not None:
                self.experiment.set_tag(self.run_id, INTERRUPTED_TAG, interruption.name)
                status = "KILLED"
            if self.experiment.get_run(self.run_id).info.status == "FINISHED":
                self.experiment.set_tag(self.run_id, "mgc.later_failure", "a later command on this finished run "
                                        "failed; its status and results are those it finished with")
                return
        super().finalize(status)


def mlflow_client(tracking_uri: str | None = None):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri or default_tracking_uri())


def find_run(client, run_id: str):
    """The run, or None when this store does not hold it."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        return None


def from_elsewhere_tags(checkpoint: str | Path, run_id: str) -> dict[str, str]:
    """Tags of a new run for a checkpoint whose training run lies in another store: where the checkpoint came from."""
    return {CHECKPOINT_TAG: str(Path(checkpoint).resolve()), ELSEWHERE_RUN_TAG: run_id}


def evaluation_run_settings(training_run_id: str, manifest: str | Path | None, preset: str, checkpoint: str | Path,
                            model_name: str | None = None, tracking_uri: str | None = None) -> dict[str, Any]:
    """MLflowLogger settings of a new evaluation run of a training run's checkpoint: the training run's experiment,
    a name after the dataset and preset, and tags linking it to (and nesting it under) the training run. `manifest`
    None means the training run's own data. A checkpoint whose training run this store does not hold gets a run in
    the logger's own experiment, named after `model_name` (else the checkpoint's file), tagged with where it came
    from (and still with mgc.evaluates, so reports count it as an evaluation, of a run they do not have)."""
    client = mlflow_client(tracking_uri)
    training = find_run(client, training_run_id)
    if training is None:
        tags = {EVALUATES_TAG: training_run_id, PRESET_TAG: preset, **from_elsewhere_tags(checkpoint, training_run_id)}
        if manifest:
            tags[DATASET_TAG] = str(Path(manifest).resolve())
        dataset = dataset_name(manifest) if manifest else "?"
        return {"run_name": f"{model_name or Path(checkpoint).stem} test {dataset} {preset}", "tags": tags}
    experiment = client.get_experiment(training.info.experiment_id).name
    manifest = manifest or training.data.tags.get(DATASET_TAG) or training.data.params.get("data/init_args/manifest")
    dataset = dataset_name(manifest) if manifest else "?"
    tags = {EVALUATES_TAG: training_run_id, PARENT_TAG: training_run_id, PRESET_TAG: preset}
    if manifest:
        tags[DATASET_TAG] = str(Path(manifest).resolve())
    return {"experiment_name": experiment, "run_name": f"{training.info.run_name} test {dataset} {preset}",
            "tags": tags}


def finished_evaluations(client, training_run_id: str) -> list:
    """The FINISHED evaluation runs of a training run's checkpoints."""
    training = client.get_run(training_run_id)
    return client.search_runs([training.info.experiment_id], max_results=10_000,
                              filter_string=f"tags.`{EVALUATES_TAG}` = '{training_run_id}' "
                                            "and attributes.status = 'FINISHED'")


def where_to_find(run_id: str, checkpoints: str | Path | None = None, tracking_uri: str | None = None) -> str:
    """What a user needs after a command: the run, its experiment, the checkpoint folder and how to browse them."""
    import sys

    uri = tracking_uri or default_tracking_uri()
    client = mlflow_client(uri)
    run = client.get_run(run_id)
    experiment = client.get_experiment(run.info.experiment_id).name
    mlflow = Path(sys.executable).parent / "mlflow"
    try:
        mlflow = mlflow.relative_to(Path.cwd())
    except ValueError:
        pass
    lines = [f"MLflow run {run_id} ({run.info.run_name}) in experiment {experiment!r}"]
    if checkpoints is not None:
        lines.append(f"checkpoints: {checkpoints}")
    # MLflow 3's UI opens on its GenAI home page: the address goes straight to this run
    lines.append(f"browse: MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false {mlflow} server --backend-store-uri {uri} "
                 f"--host 127.0.0.1 --port 5000 --workers 1   (then open "
                 f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/{run_id})")
    return "\n".join(lines)


def mlflow_loggers(trainer: Trainer) -> list[MLFlowLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, MLFlowLogger)]


def log_figure(trainer: Trainer, figure, artifact_file: str) -> None:
    """Save a matplotlib figure as an artifact of the run (rank 0 only), then close it."""
    import matplotlib.pyplot as plt

    if trainer.is_global_zero:
        for logger in mlflow_loggers(trainer):
            logger.experiment.log_figure(logger.run_id, figure, artifact_file)
    plt.close(figure)


def log_text(trainer: Trainer, text: str, artifact_file: str) -> None:
    """Save a text (e.g. a CSV of per-window predictions) as an artifact of the run (rank 0 only)."""
    if trainer.is_global_zero:
        for logger in mlflow_loggers(trainer):
            logger.experiment.log_text(logger.run_id, text, artifact_file)


class CheckpointMetadata(Callback):
    """Puts into every checkpoint what inference and resume need: the MLflow run id, the front-end config, the
    training windows' lengths and the label map; tags the run with the checkpoint paths when training ends."""

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        loggers = mlflow_loggers(trainer)
        if loggers:
            checkpoint[RUN_ID_KEY] = loggers[0].run_id
        config = getattr(trainer.datamodule, "config", None)
        if config is not None:
            checkpoint[FRONT_END_KEY] = config.to_dict()
        train = getattr(trainer.datamodule, "datasets", {}).get("train")
        if train is not None:
            checkpoint[WINDOWS_KEY] = sorted({round(row.duration_s, 6) for row in train.rows})
        checkpoint[LABEL_MAP_KEY] = label_map()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback is not None else ""
        for logger in mlflow_loggers(trainer):
            for tag, path in (("checkpoint/best", best), ("checkpoint/last", last_checkpoint(trainer))):
                if path:
                    logger.experiment.set_tag(logger.run_id, tag, str(Path(path).resolve()))


class ConfigToMLflow(SaveConfigCallback):
    """Logs the fully resolved LightningCLI config (front end included) as flat params and as config.yaml.

    MLflow params are immutable, so a run that is resumed or tested later keeps its original params and gets each
    later config (new max_epochs, ckpt_path, ...) as config_<stage>_<n>.yaml instead."""

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        text = self.parser.dump(self.config, skip_none=False)
        stage = getattr(stage, "value", stage)  # Lightning passes a TrainerFn enum
        for logger in mlflow_loggers(trainer):
            client, run_id = logger.experiment, logger.run_id
            if client.get_run(run_id).data.params:
                earlier = [a for a in client.list_artifacts(run_id) if a.path.startswith(f"config_{stage}_")]
                client.log_text(run_id, text, f"config_{stage}_{len(earlier) + 1}.yaml")
                continue
            logger.log_hyperparams(self.config.as_dict())
            config = getattr(trainer.datamodule, "config", None)
            if config is not None:
                logger.log_hyperparams({f"front_end.{k}": v for k, v in config.to_dict().items()})
            client.log_text(run_id, text, "config.yaml")


def read_checkpoint_metadata(path: str | Path) -> dict:
    """The metadata CheckpointMetadata stored, without building a model."""
    checkpoint = load_checkpoint(path)
    return {key: checkpoint.get(key) for key in (RUN_ID_KEY, FRONT_END_KEY, LABEL_MAP_KEY)}
