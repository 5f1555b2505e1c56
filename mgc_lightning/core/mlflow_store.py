"""Where runs are tracked: the MLflow store's address (MLFLOW_TRACKING_URI, else a SQLite file in the working
directory) and where a SQLite store keeps its artifacts. Plain paths, without MLflow: training, calibration, the
pipeline and the report all find the same store through here, and the tags that link a test run to its training run
and a run to its dataset (the report reads them without importing Lightning)."""

from __future__ import annotations

import os
from pathlib import Path

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
EVALUATES_TAG = "mgc.evaluates"  # on an evaluation run: the id of the training run whose checkpoint it tests
DATASET_TAG = "mgc.dataset"  # the manifest (resolved path) a run trained or tested on


def dataset_name(manifest: str | Path) -> str:
    """A short name for a manifest: its file name, or its folder's when the file is just `manifest.csv`."""
    path = Path(manifest)
    return path.resolve().parent.name if path.stem == "manifest" else path.stem


def default_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else `mlflow.db` (SQLite) in the working directory."""
    return os.environ.get(TRACKING_URI_ENV) or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def artifact_root(tracking_uri: str) -> str | None:
    """Where new experiments of a SQLite store keep their artifacts: `mlartifacts` beside the database file
    (./mlartifacts for the default ./mlflow.db), so a store and its artifacts form one folder; None (MLflow's
    choice) for other stores."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    database = Path(tracking_uri.removeprefix("sqlite:///"))
    return (database.resolve().parent / "mlartifacts").as_uri()
