"""A `runs/paper/` folder copied back from a GPU machine: its MLflow store finds its artifacts again once relocated."""

import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "relocate_mlflow_store.py"


def test_a_copied_store_reads_its_artifacts_after_relocation(tmp_path):
    there, here = tmp_path / "gpu" / "repo", tmp_path / "local" / "repo"
    store = there / "runs" / "paper"
    store.mkdir(parents=True)
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.create_experiment("paper", artifact_location=(store / "mlartifacts").as_uri())
    run = client.create_run(experiment).info.run_id
    (tmp_path / "REPORT.md").write_text("tables")
    client.log_artifact(run, str(tmp_path / "REPORT.md"), "report")
    client.set_terminated(run)
    (here / "runs").mkdir(parents=True)
    (there / "runs").rename(here / "runs")  # copied back: the old place is gone

    copied = here / "runs" / "paper" / "mlflow.db"
    assert not Path(MlflowClient(f"sqlite:///{copied}").get_run(run).info.artifact_uri[len("file://"):]).exists()
    result = subprocess.run([sys.executable, str(SCRIPT), str(copied), str(there), str(here)], capture_output=True,
                            text=True, check=True)
    assert "2 artifact locations now under" in result.stdout  # the experiment's and the run's
    relocated = MlflowClient(f"sqlite:///{copied}")
    local = relocated.download_artifacts(run, "report/REPORT.md", str(tmp_path))
    assert Path(local).read_text() == "tables"
    assert relocated.get_experiment(experiment).artifact_location.startswith(here.as_uri())
