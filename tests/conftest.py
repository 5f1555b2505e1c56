"""Shared fixtures: real audio files written by the tests, and the public clips in ../shared/data/real."""

from __future__ import annotations

import csv
import os
import shlex
import shutil
import signal
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import soundfile as sf

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


@pytest.fixture
def real_data() -> Path:
    if not REAL_DATA.is_dir():
        pytest.skip(f"public reference clips not found at {REAL_DATA} (they live beside the repository in CI only)")
    return REAL_DATA


# The modules that take longest (setup and calls, measured with --durations on 2 cores at 874f5c5), first: `make
# test` hands whole modules to its workers (--dist loadfile, one build of each module's fixtures), so starting the long
# ones first keeps both cores busy to the end. The rest follow in collection order.
LONGEST_FIRST = ("test_learning", "test_detect", "test_paper_dry_run", "test_readme_own_data", "test_fault_injection",
                 "test_pipeline", "test_multi_node", "test_ddp_sharding", "test_ddp_training", "test_ddp_evaluation",
                 "test_bad_input_cli", "test_segmenter", "test_annotate_browser", "test_mask_degrade", "test_cli",
                 "test_typed_masks", "test_interrupts", "test_season_summary", "test_fusion",
                 "test_classifier_training", "test_synth_build", "test_run_records")


def pytest_collection_modifyitems(items):
    missing = [name for name in LONGEST_FIRST if not (Path(__file__).parent / f"{name}.py").is_file()]
    if missing:  # a renamed module would silently lose its place at the front
        raise pytest.UsageError(f"tests/conftest.py LONGEST_FIRST names modules that do not exist: {missing}")
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: the rest keep their order


def pytest_configure(config):
    """A test worker of `pytest -n` runs torch (and the processes it starts) on one thread: the workers share the
    cores, and two workers of two threads each on 2 cores run slower than one thread each."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        import torch

        torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def mlflow_schema_from_a_template(tmp_path_factory):
    """Every new SQLite MLflow store of this test process starts as a copy of one empty store that MLflow itself built
    once here: building the schema runs its ~60 migrations, 3-6 s a store, and the suite opens a new store in most of
    its tests. The copy (SQLite's backup API) holds the tables MLflow's own migrations build; processes that tests
    start build theirs as users' do."""
    import sqlite3
    from contextlib import closing

    import mlflow.store.db.utils as db_utils
    from sqlalchemy import create_engine, inspect

    template = tmp_path_factory.mktemp("mlflow-schema") / "empty.db"
    engine = create_engine(f"sqlite:///{template}")
    db_utils._initialize_tables(engine)
    engine.dispose()
    build = db_utils._initialize_tables

    def from_template(engine) -> None:
        """A new, empty SQLite file gets the template; anything else (a half-built store, one of an older MLflow that
        lacks newer tables) goes through MLflow's own migrations, as a user's would."""
        if (engine.url.get_backend_name() != "sqlite" or engine.url.database in (None, "", ":memory:")
                or inspect(engine).get_table_names()):
            return build(engine)
        raw = engine.raw_connection()
        try:
            with closing(sqlite3.connect(template)) as source:
                source.backup(raw.driver_connection)
        finally:
            raw.close()

    db_utils._initialize_tables = from_template
    yield
    db_utils._initialize_tables = build


@pytest.fixture
def one_thread():
    """Torch on one thread: tiny networks train several times faster than on a contended machine's every core, and
    results compared with a subprocess's (OMP_NUM_THREADS=1) are summed in the same order."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_audio(path: Path, samples: np.ndarray, sample_rate: int, subtype: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples, sample_rate, subtype=subtype)
    return path


def tone(frequency: float, duration_s: float, sample_rate: int, amplitude: float = 0.1) -> np.ndarray:
    t = np.arange(int(duration_s * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


MANIFEST_HEADER = ["path", "start_s", "duration_s", "whistle", "beluga_click", "porpoise_click", "recording", "site"]


def write_rows(path: Path, rows: list[list], header: list[str] = MANIFEST_HEADER) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_tiny_dataset(root: Path) -> Path:
    """Six 2-second recordings at 384 kHz on two sites, cut into 0.5 s windows with varied labels; the manifest."""
    rng = np.random.default_rng(0)
    rows = []
    for recording in range(6):
        samples = rng.normal(0, 1e-3, 2 * 384_000).astype(np.float32)
        samples[: 384_000] += tone(10_000 + 2_000 * recording, 1.0, 384_000)
        name = f"rec{recording}.flac"
        write_audio(root / "audio" / name, samples, 384_000)
        for window in range(4):
            bits = [(recording + window) % 2, (recording * window) % 2, window // 2 % 2]
            rows.append([f"audio/{name}", window * 0.5, 0.5, *bits, f"rec{recording}", f"site{recording % 2}"])
    return write_rows(root / "manifest.csv", rows)


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return write_tiny_dataset(tmp_path)


def small_benchmark(root: Path, windows: int, per_recording: int, deployments: int, seed: int, workers: int = 1) -> list:
    """A small synthetic benchmark under root/bench with ideal `origin` masks in root/cache; returns its rows."""
    from mgc_lightning.audio.manifest import load_manifest
    from mgc_lightning.frontend.spectrogram import get_preset
    from mgc_lightning.synth.build import build_benchmark, write_ideal_masks
    from mgc_lightning.synth.config import BenchmarkConfig

    config = BenchmarkConfig(name="small", n_windows=windows, windows_per_recording=per_recording, window_s=0.25,
                             n_deployments=deployments)
    rows = load_manifest(build_benchmark(root / "bench", config, seed=seed, workers=workers, progress=False))
    write_ideal_masks(rows, get_preset("origin"), root / "cache", progress=False)
    return rows


def tiny_bundle(path: Path, window_s: float = 0.25, head_bias: list[float] | None = None, **classifier):
    """An untrained narrow baseline classifier saved as a bundle (no training: seconds). `head_bias` replaces the
    head's last layer by that constant output, so every window gets the same logits."""
    import torch

    from mgc_lightning.deploy.bundle import Bundle, save_bundle, self_contained
    from mgc_lightning.frontend.spectrogram import get_preset
    from mgc_lightning.models.classifier import ClassifierModule

    torch.manual_seed(0)
    module = ClassifierModule(backbone_kwargs={"channels": [8, 16, 32, 64], "stem_width": 8}, dim=32, **classifier)
    state = module.state_dict()
    if head_bias is not None:
        state["head.2.weight"] = torch.zeros_like(state["head.2.weight"])
        state["head.2.bias"] = torch.tensor(head_bias)
    bundle = Bundle(front_end=get_preset("origin"), window_s=window_s, classifier=self_contained(module.hparams),
                    classifier_state=state)
    save_bundle(bundle, path)
    return path


def edited_bundle(source: Path, target: Path, **settings) -> Path:
    """A copy of a bundle with some JSON settings changed by hand and its content hash made to match: a bundle
    edited on purpose, which only the settings' own checks can refuse."""
    import json

    import torch

    from mgc_lightning.deploy.bundle import content_hash

    stored = torch.load(source, map_location="cpu", weights_only=True)
    text = json.dumps({**json.loads(stored["config"]), **settings}, sort_keys=True)
    torch.save({**stored, "config": text, "sha256": content_hash(text, stored["tensors"])}, target)
    return target


def chromium_or_skip() -> str:
    """Debian's chromium; without it (or Playwright) the tests skip locally with the reason, and fail in CI."""
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "Playwright is not installed: pip install -e '.[test]'"
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if reason is None and executable is None:
        reason = "no Chromium on this machine: install Debian's package (apt-get install chromium)"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run in CI: {reason}")
        pytest.skip(reason)
    return executable


PRELOADED_PYTHON = Path(__file__).with_name("preloaded_python.py")


@pytest.fixture(scope="session")
def preloaded_python(tmp_path_factory) -> Iterator[list[str]]:
    """The command line of a Python whose commands (`-m MODULE ARGS` or `SCRIPT ARGS`) run in fresh forks of one
    process that imported torch, Lightning and the rest once (tests/preloaded_python.py): for tests that start many
    processes and are not about start-up. It imports with one torch thread and the hub offline, as the suite runs."""
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("preloaded")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    # its own process group: the end of the session kills the server, its watchers and whatever they still run
    server = subprocess.Popen([sys.executable, str(PRELOADED_PYTHON), "serve", str(folder / "python.sock")], env=env,
                              stdout=subprocess.PIPE, text=True, process_group=0)
    try:
        assert server.stdout.readline() == "ready\n", "the preloaded Python did not start"
        yield [sys.executable, str(PRELOADED_PYTHON), str(folder / "python.sock")]
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def kill_group(process) -> None:
    """SIGKILL to the process group a preloaded-Python client leads (started with process_group=0): the client and
    the command's process die together. Returns once every process of the group is gone, so nothing the command had
    under way can still land after it."""
    import time

    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:  # it had ended already: the test's own checks say whether that was too soon
        pass
    process.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.005)
    raise AssertionError(f"process group {process.pid} still has processes 30 s after SIGKILL")


@pytest.fixture(scope="session")
def preloaded_mgc(preloaded_python, tmp_path_factory) -> Path:
    """An `mgc` executable on the preloaded Python: `python -m mgc_lightning.cli ARGS` in a fork."""
    mgc = tmp_path_factory.mktemp("preloaded-mgc") / "mgc"
    mgc.write_text(f'#!/bin/sh\nexec {shlex.join(preloaded_python)} -m mgc_lightning.cli "$@"\n')
    mgc.chmod(0o755)
    return mgc


# Runs `mgc` cases through its entry point (main() reading sys.argv, as the installed `mgc` script does) in one child
# process, so the imports are paid once. Each case runs in its own folder, with fresh warning registries (a warning
# shown by one case shows again in the next); its exit status, output and whether a file MARKER appeared there.
CLI_RUNNER = """
import io, json, os, sys, traceback, warnings
from pathlib import Path


class Forward(io.TextIOBase):
    # sys.stdout / sys.stderr for every case: a handler that keeps the stream it found at import (Lightning's) still
    # writes into the case that runs
    def __init__(self):
        self.target = io.StringIO()

    def write(self, text):
        return self.target.write(text)

    def flush(self):
        pass


out, err = sys.stdout, sys.stderr = Forward(), Forward()
from mgc_lightning.cli import main

cases_file, results_file = sys.argv[1:3]
cases, results = json.loads(Path(cases_file).read_text()), {}
for name, (folder, argv) in cases.items():
    os.chdir(folder)
    out.target, err.target = io.StringIO(), io.StringIO()
    with warnings.catch_warnings():
        sys.argv = ["mgc", *argv]
        try:
            code = main()
        except SystemExit as exit:
            code = exit.code
        except BaseException:
            traceback.print_exc()
            code = 1
    results[name] = {"code": code, "stdout": out.target.getvalue(), "stderr": err.target.getvalue(),
                     "marker": Path("MARKER").exists()}
Path(results_file).write_text(json.dumps(results))
"""


def run_cli_cases(cases: dict[str, tuple[Path, list[str]]], env: dict[str, str], work: Path,
                  python: list[str] | None = None) -> dict[str, dict]:
    """Each case's (folder, argv) through CLI_RUNNER, in a fresh `python` process or on the one given (the preloaded
    Python, when the cases are not about what the imports print); name -> {"code", "stdout", "stderr", "marker"}."""
    import json
    import subprocess
    import sys

    (work / "cases.json").write_text(json.dumps({name: [str(folder), argv] for name, (folder, argv) in cases.items()}))
    (work / "cli_runner.py").write_text(CLI_RUNNER)
    subprocess.run([*(python or [sys.executable]), str(work / "cli_runner.py"), str(work / "cases.json"),
                    str(work / "results.json")], cwd=work, env=env, check=True, timeout=900)
    return json.loads((work / "results.json").read_text())


# Runs `mgc` with a record of which process wrote each cached array (tests/ddp/recorded_writes.py; see `writers`).
RECORDED_WRITES = Path(__file__).parent / "ddp" / "recorded_writes.py"


def writers(writes: Path) -> dict[str, list[int]]:
    """Each file that RECORDED_WRITES's processes wrote -> the rank of every process that wrote it, once per write."""
    found: dict[str, list[int]] = {}
    for record in writes.glob("*.txt"):
        for line in record.read_text().splitlines():
            rank, path = line.split(" ", 1)
            found.setdefault(path, []).append(int(rank))
    return found


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative name -> bytes), to compare two runs' outputs byte for byte."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
