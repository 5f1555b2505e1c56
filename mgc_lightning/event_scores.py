"""Event-level precision and recall of `mgc detect`'s Raven selections against a synthetic benchmark's events.csv.

Recall: the share of labelled events (calls an annotator would mark) that a selection of their type overlaps in
time. Precision: the share of selections that overlap an event of their type, labelled or not (a faint call the
labels leave out is still a call, not a false alarm).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

from .detect import output_name
from .labels import SOUND_TYPES
from .synth.build import read_events


def _overlaps(begin: float, end: float, intervals: Sequence[tuple[float, float]]) -> bool:
    return any(min(end, e) > max(begin, b) for b, e in intervals)


def event_scores(detections: str | Path, benchmark: str | Path, recordings: Sequence[str]) -> dict[str, dict]:
    """Per sound type: events, detected events, recall, selections, true selections, precision (None when there is
    nothing to divide by), over the given recordings of the benchmark (audio/<recording>.flac)."""
    detections, benchmark = Path(detections), Path(benchmark)
    events = [e for e in read_events(benchmark) if e["recording"] in set(recordings)]
    scores = {t: {"events": 0, "detected": 0, "selections": 0, "true_selections": 0} for t in SOUND_TYPES}
    for recording in recordings:
        audio = (benchmark / "audio" / f"{recording}.flac").resolve()
        table = detections / "raven" / f"{output_name(audio)}.selections.txt"
        if not table.is_file():
            raise FileNotFoundError(f"{table}: no Raven table for {audio}; run mgc detect over the benchmark's audio")
        with open(table, newline="") as handle:
            selections = list(csv.DictReader(handle, delimiter="\t"))
        for sound_type in SOUND_TYPES:
            boxes = [(float(s["Begin Time (s)"]), float(s["End Time (s)"])) for s in selections
                     if s["Annotation"] == sound_type]
            calls = [e for e in events if e["recording"] == recording and e["sound_type"] == sound_type]
            labelled = [(float(e["start_s"]), float(e["end_s"])) for e in calls if e["labelled"] == "True"]
            every = [(float(e["start_s"]), float(e["end_s"])) for e in calls]
            score = scores[sound_type]
            score["events"] += len(labelled)
            score["detected"] += sum(_overlaps(b, e, boxes) for b, e in labelled)
            score["selections"] += len(boxes)
            score["true_selections"] += sum(_overlaps(b, e, every) for b, e in boxes)
    for score in scores.values():
        score["recall"] = score["detected"] / score["events"] if score["events"] else None
        score["precision"] = score["true_selections"] / score["selections"] if score["selections"] else None
    return scores
