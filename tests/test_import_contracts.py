"""The import contracts of pyproject.toml ([tool.importlinter]: the layers of stages, models that stay models,
deployment without training) hold for the package, and an import planted against each one breaks it: `lint-imports`
runs on a copy of the package and of pyproject.toml, found first on the path, with and without the planted import."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"  # from the test extra, beside this Python
LAYERS = "Stages import only the stages below them"
MODELS = "Models import no job, data or report module"
DEPLOY = "Deployment needs neither training, the synthetic benchmark nor the report"


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The package and pyproject.toml, copied into a folder of their own."""
    shutil.copytree(REPOSITORY / "mgc_lightning", tmp_path / "mgc_lightning",
                    ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(REPOSITORY / "pyproject.toml", tmp_path)
    return tmp_path


def lint_imports(folder: Path) -> subprocess.CompletedProcess:
    assert LINT_IMPORTS.is_file(), f"{LINT_IMPORTS} missing: install the test extra (make install)"
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo", "pyproject.toml"], cwd=folder,
                          env={**os.environ, "PYTHONPATH": str(folder)}, capture_output=True, text=True, timeout=300)


def plant(folder: Path, module: str, line: str) -> None:
    path = folder / "mgc_lightning" / module
    path.write_text(path.read_text() + f"\n\n{line}  # planted by test_import_contracts\n")


def test_the_package_keeps_every_contract(checkout):
    result = lint_imports(checkout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Contracts: 3 kept, 0 broken." in result.stdout
    assert str(checkout / "mgc_lightning") in subprocess.run(
        [sys.executable, "-c", "import mgc_lightning; print(mgc_lightning.__file__)"], cwd=checkout,
        env={**os.environ, "PYTHONPATH": str(checkout)}, capture_output=True, text=True).stdout  # the copy is linted


@pytest.mark.parametrize(("module", "line", "broken", "kept"), [
    # a model that writes a report itself: models import no job, and report lies above models (deployment, which
    # loads models, would then reach the report too)
    ("models/classifier.py", "from ..report import comparison", [MODELS, LAYERS, DEPLOY], []),
    # detection that needs the training code: deploy stands apart from train (its sibling in the layers, too)
    ("deploy/detect.py", "from ..train import tracking", [DEPLOY, LAYERS], [MODELS]),
    # an import inside a function counts: reading Raven tables reaching up to the cache
    ("audio/raven.py", "def _planted():\n    from ..frontend import cache", [LAYERS], [MODELS, DEPLOY]),
])
def test_a_planted_import_breaks_its_contract(checkout, module, line, broken, kept):
    plant(checkout, module, line)
    result = lint_imports(checkout)
    assert result.returncode != 0, result.stdout[-3000:]
    for name in broken:
        assert f"{name} BROKEN" in result.stdout, result.stdout[-3000:]
    for name in kept:
        assert f"{name} KEPT" in result.stdout, result.stdout[-3000:]
    assert f"mgc_lightning.{module[:-3].replace('/', '.')}" in result.stdout  # the report names the importer
