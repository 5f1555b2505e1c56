"""Event-level precision and recall of `mgc detect`'s Raven selections against a synthetic benchmark's events.csv.

Recall: the share of labelled events (calls an annotator would mark) that a selection of their type matches.
Precision: the share of selections that match an event of their type, labelled or not (a faint call the labels leave
out is still a call, not a false alarm). `event_scores` matches by any overlap in time; `box_scores` asks the boxes
to bound their calls: a time-frequency box IoU of at least `min_iou` (0.3 by default).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable, Sequence

from ..core.labels import SOUND_TYPES
from ..deploy.detection_folder import output_name
from ..synth.events import read_events

Box = tuple[float, float, float, float]  # begin s, end s, low Hz, high Hz
BOX_IOU = 0.3


def _overlaps(box: Box, others: Sequence[Box]) -> bool:
    return any(min(box[1], o[1]) > max(box[0], o[0]) for o in others)


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two time-frequency boxes (areas in s x Hz); 0 when they do not overlap."""
    width = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[2], b[2]))
    intersection = width * height
    union = (a[1] - a[0]) * (a[3] - a[2]) + (b[1] - b[0]) * (b[3] - b[2]) - intersection
    return intersection / union if union > 0 else 0.0


def _scores(detections: str | Path, benchmark: str | Path, recordings: Sequence[str],
            matches: Callable[[Box, Sequence[Box]], bool]) -> dict[str, dict]:
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
            boxes = [tuple(float(s[c]) for c in ("Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)"))
                     for s in selections if s["Annotation"] == sound_type]
            calls = [e for e in events if e["recording"] == recording and e["sound_type"] == sound_type]
            every = [tuple(float(e[c]) for c in ("start_s", "end_s", "low_hz", "high_hz")) for e in calls]
            labelled = [box for box, e in zip(every, calls) if e["labelled"] == "True"]
            score = scores[sound_type]
            score["events"] += len(labelled)
            score["detected"] += sum(matches(event, boxes) for event in labelled)
            score["selections"] += len(boxes)
            score["true_selections"] += sum(matches(box, every) for box in boxes)
    for score in scores.values():
        score["recall"] = score["detected"] / score["events"] if score["events"] else None
        score["precision"] = score["true_selections"] / score["selections"] if score["selections"] else None
    return scores


def event_scores(detections: str | Path, benchmark: str | Path, recordings: Sequence[str]) -> dict[str, dict]:
    """Per sound type: events, detected events, recall, selections, true selections, precision (None when there is
    nothing to divide by), over the given recordings of the benchmark (audio/<recording>.flac); a selection and an
    event match when they overlap in time."""
    return _scores(detections, benchmark, recordings, _overlaps)


def box_scores(detections: str | Path, benchmark: str | Path, recordings: Sequence[str],
               min_iou: float = BOX_IOU) -> dict[str, dict]:
    """`event_scores`' counts with a stricter match: a selection's box and an event's (its start and end, its low and
    high frequency) have a time-frequency IoU of at least `min_iou`. Matches are not one to one: one box bounding
    two calls well counts for both, as in `event_scores`."""
    if not 0 < min_iou <= 1:
        raise ValueError(f"min_iou must be in (0, 1], got {min_iou}")
    return _scores(detections, benchmark, recordings,
                   lambda box, others: any(box_iou(box, other) >= min_iou for other in others))
