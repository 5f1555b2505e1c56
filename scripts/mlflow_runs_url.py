"""The address of an experiment's runs in the MLflow UI that `make mlflow-ui` serves: MLflow 3 opens on its GenAI
home page, so the target prints where the runs are (the plain address while the store or experiment is not there).

    python scripts/mlflow_runs_url.py mlflow.db demo 5000
"""

from __future__ import annotations

import argparse
from pathlib import Path


def runs_url(store: Path, experiment: str, port: int) -> str:
    """`http://127.0.0.1:PORT/#/experiments/ID/runs`, or the UI's home page and the reason there is no such page."""
    home = f"http://127.0.0.1:{port}"
    if not store.is_file():
        return f"{home}  (no store {store} yet)"
    from mlflow.tracking import MlflowClient

    found = MlflowClient(f"sqlite:///{store}").get_experiment_by_name(experiment)
    if found is None:
        return f"{home}  (no experiment {experiment!r} in {store} yet)"
    return f"{home}/#/experiments/{found.experiment_id}/runs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", type=Path, help="the MLflow SQLite store")
    parser.add_argument("experiment", help="experiment whose runs to open")
    parser.add_argument("port", type=int)
    args = parser.parse_args()
    print(f"MLflow UI: open {runs_url(args.store, args.experiment, args.port)}", flush=True)


if __name__ == "__main__":
    main()
