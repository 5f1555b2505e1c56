"""The season summary: start times from recorders' file names, a user's pattern or a CSV, and `mgc detect` then `mgc
summarize` on a multi-day, two-deployment folder of real audio files (a small untrained bundle: seconds)."""

import csv
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from conftest import chromium_or_skip, edited_bundle, tiny_bundle, tone, write_audio
from mgc_lightning.cli import main
from mgc_lightning.core.errors import InputError
from mgc_lightning.core.labels import SOUND_TYPES
from mgc_lightning.deploy.recording_times import NamePattern, RecordingTimes, TimeSettings

REPOSITORY = Path(__file__).resolve().parents[1]
RATE = 384_000
PNG = b"\x89PNG\r\n\x1a\n"
# Thresholds inside the spread of the untrained bundle's scores on these files: windows on both sides of each.
THRESHOLDS = [0.48, 0.435, 0.5]
# name -> (start, seconds); a 2 s recording crosses midnight
DATED = {
    "north/20240601_020000.WAV": (datetime(2024, 6, 1, 2, 0, 0), 1),
    "north/20240601_143000.WAV": (datetime(2024, 6, 1, 14, 30, 0), 1),
    "north/20240602_235959.WAV": (datetime(2024, 6, 2, 23, 59, 59), 2),
    "north/20240603_081500.WAV": (datetime(2024, 6, 3, 8, 15, 0), 1),
    "south/5783.240601101500.wav": (datetime(2024, 6, 1, 10, 15, 0), 1),
    "south/5783.240602221000.wav": (datetime(2024, 6, 2, 22, 10, 0), 1),
    "south/south_2024-06-03T05-00-00.wav": (datetime(2024, 6, 3, 5, 0, 0), 1),
}
UNDATED = {"north/20241301_120000.WAV": "month must be in 1..12",
           "north/notes.wav": "no start time in the name"}


def _rows(table: Path) -> list[dict]:
    with open(table, newline="") as handle:
        return list(csv.DictReader(handle))


def _clip(seconds: int, seed: int) -> np.ndarray:
    """Quarter-second windows of noise, a tone or clicks: windows the untrained model scores differently."""
    rng, parts, count = np.random.default_rng(seed), [], RATE // 4
    for kind in rng.integers(3, size=4 * seconds):
        noise = rng.normal(0, 0.02 if kind == 0 else 0.01, count).astype(np.float32)
        if kind == 1:
            noise += tone(rng.uniform(5e3, 20e3), 0.25, RATE, 0.2)[:count]
        if kind == 2:
            noise[:: RATE // 100] = 0.8
        parts.append(noise)
    return np.concatenate(parts)


@pytest.fixture(scope="module")
def season(tmp_path_factory):
    """`mgc detect` over two deployments (folders north and south) of recordings from three days."""
    root = tmp_path_factory.mktemp("season")
    model = edited_bundle(tiny_bundle(root / "tiny.mgc"), root / "model.mgc", thresholds=THRESHOLDS)
    for seed, name in enumerate(sorted([*DATED, *UNDATED])):
        write_audio(root / "recordings" / name, _clip(DATED.get(name, (None, 1))[1], seed), RATE)
    out = root / "out"
    assert main(["detect", str(root / "recordings"), "--model", str(model), "--out", str(out), "--quiet"]) == 0
    return root, out


def _expected_hourly(out: Path, deployment: str) -> list[list[int | str]]:
    """Hourly counts computed here from the per-window CSVs and the start times this test gave the files."""
    counts: dict[datetime, list[int]] = {}
    for table in (out / "windows").glob("*.csv"):
        for row in _rows(table):
            name = f"{Path(row['file']).parent.name}/{Path(row['file']).name}"
            if name not in DATED or not name.startswith(deployment) or row["signal_problem"]:
                continue
            moment = DATED[name][0] + timedelta(seconds=float(row["start_s"]))
            hour = counts.setdefault(moment.replace(minute=0, second=0, microsecond=0), [0] * 4)
            hour[0] += 1
            for t, sound_type in enumerate(SOUND_TYPES):
                hour[1 + t] += float(row[f"p_{sound_type}"]) >= THRESHOLDS[t]
    return [[hour.date().isoformat(), hour.hour, *values] for hour, values in sorted(counts.items())]


def test_hourly_and_daily_tables_equal_counts_from_the_window_csvs(season):
    _, out = season
    for deployment in ("north", "south"):
        expected = _expected_hourly(out, deployment)
        written = _rows(out / "summary" / deployment / "presence_hourly.csv")
        assert [list(row.values()) for row in written] == [list(map(str, row)) for row in expected], deployment
        # per day: windows, hours, windows with each type, hours with each type
        daily: dict[str, list[int]] = {}
        for day, _, windows, *positives in expected:
            totals = daily.setdefault(day, [0] * (2 + 2 * len(SOUND_TYPES)))
            totals[0] += windows
            totals[1] += 1
            for t, count in enumerate(positives):
                totals[2 + t] += count
                totals[2 + len(SOUND_TYPES) + t] += count > 0
        written = _rows(out / "summary" / deployment / "daily_detections.csv")
        assert [list(row.values()) for row in written] == [[day, *map(str, totals)] for day, totals in daily.items()]
    north = _rows(out / "summary" / "north" / "presence_hourly.csv")
    # the recording that starts at 23:59:59 counts in two hours of two days
    assert [(r["date"], r["hour"], r["windows"]) for r in north if r["date"] >= "2024-06-02"][:2] == [
        ("2024-06-02", "23", "4"), ("2024-06-03", "0", "4")]
    # the thresholds split the windows: the counts are not all or nothing
    positives = [int(r[name]) for r in north for name in SOUND_TYPES]
    assert 0 < sum(positives) < sum(int(r["windows"]) for r in north) * len(SOUND_TYPES)


def test_each_deployment_gets_its_own_summary_and_the_page_links_every_table(season):
    _, out = season
    assert sorted(p.name for p in (out / "summary").iterdir()) == ["north", "south", "undated.csv"]
    for deployment in ("north", "south"):
        for figure in ("diel.png", "daily.png"):
            assert (out / "summary" / deployment / figure).read_bytes()[:8] == PNG
    page = (out / "summary.html").read_text()
    targets = re.findall(r'(?:href|src)="([^"#]+)"', page)
    assert targets and all((out / target).is_file() for target in targets), targets
    windows = {f"windows/{p.name}" for p in (out / "windows").glob("*.csv")}
    raven = {f"raven/{p.name}" for p in (out / "raven").glob("*.txt")}
    assert len(windows) == len(DATED) + len(UNDATED) and windows | raven <= set(targets)
    for deployment in ("north", "south"):
        assert f'src="summary/{deployment}/diel.png"' in page and f'src="summary/{deployment}/daily.png"' in page


@pytest.mark.slow
def test_the_page_shows_every_figure_and_opens_every_table_in_a_real_browser(season):
    """summary.html as an analyst opens it (a file, no server): each deployment's figures decode in Chromium, and
    every link leads to a page that loads."""
    executable = chromium_or_skip()
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    _, out = season
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        try:
            context = browser.new_context()
            page = context.new_page()
            page.goto((out / "summary.html").as_uri())
            images = page.eval_on_selector_all("img", "images => images.map(i => [i.getAttribute('src'), "
                                                      "i.complete && i.naturalWidth > 0])")
            assert len(images) == 4 and all(shown for _, shown in images), images  # diel and daily per deployment
            text = page.inner_text("body")
            assert "north" in text and "south" in text and "month must be in 1..12" in text
            links = page.eval_on_selector_all("a[href]", "links => links.map(a => a.getAttribute('href'))")
            assert links
            for href in dict.fromkeys(links):  # a table opens as a page or arrives as a download of its bytes
                if href.startswith("#"):
                    assert page.locator(href).count() == 1, href  # a deployment's section on this page
                    continue
                try:
                    assert context.new_page().goto((out / href).as_uri()).ok, href
                except PlaywrightError as error:
                    assert "Download is starting" in str(error), (href, error)
                    with page.expect_download() as download:
                        # the tables sit in folded <details>: a script's click, as a reader's after unfolding
                        page.eval_on_selector(f'a[href="{href}"]', "link => link.click()")
                    assert Path(download.value.path()).read_bytes() == (out / href).read_bytes(), href
        finally:
            browser.close()


def test_undated_recordings_are_listed_with_the_reason_and_counted_in_no_hour(season):
    _, out = season
    listed = {f"{Path(r['file']).parent.name}/{Path(r['file']).name}": r
              for r in _rows(out / "summary" / "undated.csv")}
    assert set(listed) == set(UNDATED)
    for name, reason in UNDATED.items():
        assert reason in listed[name]["reason"] and listed[name]["deployment"] == "north"
        assert listed[name]["windows"] == "4"
    hourly = _rows(out / "summary" / "north" / "presence_hourly.csv")
    assert sum(int(r["windows"]) for r in hourly) == 4 * sum(s for n, (_, s) in DATED.items() if n.startswith("north"))
    page = (out / "summary.html").read_text()
    assert "Recordings without a start time" in page and "notes.wav" in page and "month must be in 1..12" in page


def test_summarize_after_detect_gives_the_same_bytes_without_torch(season, tmp_path):
    _, detected = season
    out = shutil.copytree(detected, tmp_path / "out")
    written = {p.relative_to(out): p.read_bytes() for p in [*(out / "summary").rglob("*.csv"), out / "summary.html"]}
    shutil.rmtree(out / "summary")
    (out / "summary.html").unlink()
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "mgc_lightning.cli", "summarize", str(out)],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPOSITORY)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "season summary of 9 recordings in 2 deployment(s), 2 without a start time" in result.stdout
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert "mgc_lightning" in imported and not imported & {"torch", "lightning", "mlflow"}
    assert {path: (out / path).read_bytes() for path in written} == written


@pytest.mark.slow
def test_start_times_csv_dates_recordings_and_is_recorded_for_the_next_summary(season, tmp_path, capsys):
    root, detected = season
    out = shutil.copytree(detected, tmp_path / "out")
    times = tmp_path / "start_times.csv"
    notes = Path("..") / root.name / "recordings" / "north" / "notes.wav"  # relative to the CSV's folder
    times.write_text(f"path,start_time,deployment\n{notes},2024-06-02T13:59:59.5+01:00,east\n")
    assert main(["summarize", str(out), "--start-times", str(times)]) == 0
    # converted to UTC: windows at 12:59:59.5 and 12:59:59.75, then 13:00:00.0 and 13:00:00.25
    assert [(r["date"], r["hour"], r["windows"]) for r in _rows(out / "summary" / "east" / "presence_hourly.csv")] == [
        ("2024-06-02", "12", "2"), ("2024-06-02", "13", "2")]
    assert [Path(r["file"]).name for r in _rows(out / "summary" / "undated.csv")] == ["20241301_120000.WAV"]
    again = {p: p.read_bytes() for p in (out / "summary").rglob("*.csv")}
    assert main(["summarize", str(out)]) == 0  # the recorded start times, not the file names alone
    assert {p: p.read_bytes() for p in (out / "summary").rglob("*.csv")} == again
    # a time pattern replaces the recorders' names: the SoundTrap and ISO names of south are undated, its folder gone
    assert main(["summarize", str(out), "--time-pattern", "%Y%m%d_%H%M%S"]) == 0
    assert sorted(p.name for p in (out / "summary").iterdir()) == ["north", "undated.csv"]
    undated = [Path(r["file"]).name for r in _rows(out / "summary" / "undated.csv")]
    assert "5783.240601101500.wav" in undated and "notes.wav" in undated
    capsys.readouterr()
    times.write_text(f"path,start_time\n{notes},yesterday\n")
    assert main(["summarize", str(out), "--start-times", str(times)]) == 2
    assert "row 1 (line 2): start_time 'yesterday' is no date and time" in capsys.readouterr().err


def test_summarize_refuses_a_folder_it_cannot_summarize(tmp_path, capsys):
    assert main(["summarize", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["summarize", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "no summary_settings.json" in err


def test_detect_refuses_a_bad_time_pattern_before_reading_audio(tmp_path, capsys):
    write_audio(tmp_path / "in" / "a.wav", np.zeros(RATE // 4, np.float32), RATE)
    assert main(["detect", str(tmp_path / "in"), "--model", str(tmp_path / "absent.mgc"), "--out",
                 str(tmp_path / "out"), "--time-pattern", "%Y%m%d"]) == 2
    assert "time pattern '%Y%m%d' lacks %H" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name, start", [
    ("5783.230615143000.wav", datetime(2023, 6, 15, 14, 30, 0)),  # SoundTrap ST300/ST400/ST500: serial.YYMMDDHHMMSS
    ("67391492.180816120011.wav", datetime(2018, 8, 16, 12, 0, 11)),
    ("20240131_235959.WAV", datetime(2024, 1, 31, 23, 59, 59)),  # AudioMoth
    ("SITE-1_0_20240131_235959.wav", datetime(2024, 1, 31, 23, 59, 59)),  # Wildlife Acoustics SM
    ("ARIZONA-1_20161023$195550.wav", datetime(2016, 10, 23, 19, 55, 50)),  # SM with GPS
    ("2024-01-31T23-59-59.flac", datetime(2024, 1, 31, 23, 59, 59)),  # ISO 8601
    ("2024-01-31T23:59:59.wav", datetime(2024, 1, 31, 23, 59, 59)),
    ("ST6767.20240131T235959Z.wav", datetime(2024, 1, 31, 23, 59, 59)),
])
def test_recorder_names_give_their_start_time(name, start):
    found = RecordingTimes(TimeSettings()).of(Path("/data/bay") / name)
    assert (found.start, found.deployment, found.problem) == (start, "bay", "")


@pytest.mark.parametrize("name, reason", [
    ("20241301_120000.wav", "'20241301_120000' in the name (AudioMoth/SM YYYYMMDD_HHMMSS) is no date: month must be "
                            "in 1..12"),
    ("5783.230231143000.wav", "'230231143000' in the name (SoundTrap serial.YYMMDDHHMMSS) is no date: day is out of "
                              "range for month"),
    ("2024-01-31T24-00-00.wav", "hour must be in 0..23"),
    ("recording_2024013112000.wav", "no start time in the name (a recorder's date and time not found)"),
    ("take3.wav", "no start time in the name"),
])
def test_malformed_or_missing_dates_leave_the_recording_undated_with_the_reason(name, reason):
    found = RecordingTimes(TimeSettings()).of(Path("/data/bay") / name)
    assert found.start is None and reason in found.problem


def test_a_user_pattern_replaces_the_recorders_names_and_bad_patterns_are_refused():
    times = RecordingTimes(TimeSettings(pattern="d%Y%m%d_t%H%M"))
    assert times.of(Path("/x/hA_d20240203_t1015.wav")).start == datetime(2024, 2, 3, 10, 15)
    assert times.of(Path("/x/20240203_101500.wav")).problem == ("no start time in the name (the pattern "
                                                                "d%Y%m%d_t%H%M not found)")
    assert NamePattern("%y%m%d%H%M%S").start("20240131235959") is None  # never inside a longer run of digits
    for pattern, message in (("%Y%m%d", "lacks %H"), ("%Y%m%d%b%H", "%b is not supported"),
                             ("%Y%m%d%H%", "a % at the end"), ("%Y%m%d%H%d", "%d appears twice")):
        with pytest.raises(InputError, match=re.escape(message)):
            TimeSettings(pattern=pattern)


def test_start_times_csv_rows_are_checked(tmp_path):
    """Paths relative to the CSV's folder; an empty start_time leaves its recording undated (with the row), a file the
    CSV does not list takes its time from its name; a missing column, a path listed twice or no file are refused."""
    table = tmp_path / "times.csv"
    table.write_text("path,start_time,deployment\na.wav,2024-06-01 10:00:00,\nsub/b.wav,,bay\n")
    times = RecordingTimes(TimeSettings(start_times=table))
    a, b = times.of(tmp_path / "a.wav"), times.of(tmp_path / "sub" / "b.wav")
    assert (a.start, a.deployment) == (datetime(2024, 6, 1, 10), tmp_path.name)
    assert (b.start, b.deployment, b.problem) == (None, "bay", "no start_time in times.csv (row 2)")
    assert times.of(tmp_path / "c_20240602_100000.wav").start == datetime(2024, 6, 2, 10)
    for text, message in (("path,when\na.wav,2024-06-01\n", "no column start_time"),
                          ("path,start_time\na.wav,2024-06-01T10\n./a.wav,2024-06-01\n",
                           "row 2 (line 3): a.wav is listed twice (first in row 1)")):
        table.write_text(text)
        with pytest.raises(InputError, match=re.escape(message)):
            TimeSettings(start_times=table)
    with pytest.raises(InputError, match="CSV file not found"):
        TimeSettings(start_times=tmp_path / "absent.csv")


def test_the_documented_command_draws_the_example_diel_plot(tmp_path):
    result = subprocess.run([sys.executable, str(REPOSITORY / "scripts" / "season_summary_example.py"),
                             str(tmp_path / "diel.png")], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPOSITORY)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "diel.png").read_bytes()[:8] == PNG
