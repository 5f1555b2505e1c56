"""Where runs are tracked: the MLflow store's address (MLFLOW_TRACKING_URI, else a SQLite file in the working
directory) and where a SQLite store keeps its artifacts. Plain paths, without MLflow: training, calibration, the
pipeline and the report all find the same store through here."""

from __future__ import annotations

import os
from pathlib import Path

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"


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
