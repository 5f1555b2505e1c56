"""summary.html, the season summary on one page: per deployment its figures, its counts and its recordings (linked to
their per-window CSVs and Raven tables), then the recordings without a start time. Self-contained: its style inline,
images and tables linked relative to the page, so the output folder can be moved or shared whole."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Sequence
from urllib.parse import quote

from ..core.labels import SOUND_TYPES
from .detection_folder import raven_table, windows_table
from .presence import Deployment, RecordingPresence

STYLE = ("body{font-family:sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse;margin:.5em 0}"
         "td,th{border:1px solid #ccc;padding:.2em .5em;text-align:right}td:first-child,th:first-child{text-align:left}"
         "img{max-width:100%;display:block;margin:.5em 0}")
# a deployment without a usable window has no figures
FIGURES = (("diel.png", "share of windows with each sound type by hour of day and date"),
           ("daily.png", "windows with each sound type per day"))


def _link(out: Path, target: Path, text: str) -> str:
    return f'<a href="{escape(quote(target.relative_to(out).as_posix()))}">{escape(text)}</a>'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Cells are HTML already (escaped where they hold names)."""
    head = "".join(f"<th>{escape(name)}</th>" for name in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _recording_rows(out: Path, recordings: Sequence[RecordingPresence], undated: bool) -> list[list[str]]:
    rows = []
    for recording in recordings:
        raven = raven_table(out, recording.path)
        links = _link(out, windows_table(out, recording.path), "windows") + (
            " " + _link(out, raven, "Raven") if raven.is_file() else "")
        when = ([escape(recording.time.deployment), escape(recording.time.problem)] if undated
                else [recording.time.start.isoformat(sep=" ")])
        rows.append([escape(recording.path.name), *when, str(recording.total.windows),
                     *map(str, recording.total.positives), links])
    return rows


def _positive_hours(deployment: Deployment) -> list[int]:
    counts = deployment.hours().values()
    return [sum(1 for c in counts if c.positives[t]) for t in range(len(SOUND_TYPES))]


def summary_page(out: Path, deployments: Sequence[tuple[Deployment, Path]], undated: Sequence[RecordingPresence],
                 undated_table: Path, thresholds: Sequence[float], times: str, model_sha256: str, failed: int) -> str:
    """`deployments`: each with the folder of its figures and tables; `undated_table`: the CSV listing `undated`."""
    recordings = sum(len(d.recordings) for d, _ in deployments) + len(undated)
    rule = ", ".join(f"{name} {threshold:g}" for name, threshold in zip(SOUND_TYPES, thresholds))
    absent = f"; {len(undated)} without one, listed at the end and counted in no plot" if undated else ""
    failures = (f" {failed} file(s) could not be analysed: {_link(out, out / 'errors.csv', 'errors.csv')}."
                if failed else "")
    parts = ["<h1>Season summary</h1>",
             f"<p>{recordings} recordings analysed, in {len(deployments)} deployment(s) with start times{absent}."
             f"{failures}</p>",
             f"<p>A window counts for a sound type when its probability reaches the type's threshold ({escape(rule)}; "
             f"model sha256 {escape(model_sha256[:12])}), in the hour its start falls in. Start times come from "
             f"{escape(times)}; the hours are that clock's.</p>"]
    overview = []
    for deployment, folder in deployments:
        days = [hour.date().isoformat() for hour in deployment.hours()] or ["-"]  # "-": no usable window
        hours = _positive_hours(deployment)
        overview.append([f'<a href="#{escape(quote(folder.name))}">{escape(deployment.name)}</a>', days[0],
                         days[-1], str(len(deployment.recordings)),
                         f"{sum(r.audio_s for r in deployment.recordings) / 3600:.2f}",
                         *(f"{p} ({h} h)" for p, h in zip(deployment.total().positives, hours))])
    parts.append(_table(("deployment", "first day", "last day", "recordings", "hours of audio",
                         *(f"{name} windows (hours)" for name in SOUND_TYPES)), overview))
    for deployment, folder in deployments:
        tables = " ".join(_link(out, folder / name, name) for name in ("presence_hourly.csv", "daily_detections.csv"))
        parts += [f'<h2 id="{escape(quote(folder.name))}">{escape(deployment.name)}</h2>', f"<p>Tables: {tables}</p>"]
        parts += [f'<img src="{escape(quote((folder / name).relative_to(out).as_posix()))}" '
                  f'alt="{escape(deployment.name)}: {alt}">' for name, alt in FIGURES if (folder / name).is_file()]
        parts += [f"<details><summary>{len(deployment.recordings)} recordings</summary>"
                  + _table(("file", "start", "windows", *SOUND_TYPES, "tables"),
                           _recording_rows(out, deployment.recordings, undated=False)) + "</details>"]
    if undated:
        parts += ['<h2 id="undated">Recordings without a start time</h2>',
                  "<p>No start time could be read for these (the reason is given): they are in no plot or count "
                  f"above. Also in {_link(out, undated_table, undated_table.relative_to(out).as_posix())}.</p>",
                  _table(("file", "deployment", "reason", "windows", *SOUND_TYPES, "tables"),
                         _recording_rows(out, undated, undated=True))]
    return ('<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>Season summary</title>'
            f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(parts) + "\n</body>\n</html>\n")

