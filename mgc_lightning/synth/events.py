"""A benchmark's events.csv: one row per rendered call (its recording, window, type, time-frequency box, SNRs,
whether its window counts it, and the generator's parameters as JSON), written by build.py and read by whoever scores
detections against the calls (evaluate.event_scores), without loading the renderer."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Sequence

from ..audio.manifest import write_csv_atomic

EVENT_COLUMNS = ("recording", "window", "sound_type", "start_s", "end_s", "low_hz", "high_hz", "snr_db",
                 "effective_snr_db", "visible_pixels", "labelled", "params")


def write_events(out_dir: Path, events: Sequence[dict]) -> None:
    write_csv_atomic(out_dir / "events.csv", EVENT_COLUMNS,
                     [[json.dumps(e[c]) if c == "params" else e[c] for c in EVENT_COLUMNS] for e in events])


def read_events(out_dir: str | Path) -> list[dict]:
    with open(Path(out_dir) / "events.csv", newline="") as handle:
        return [{**row, "params": json.loads(row["params"])} for row in csv.DictReader(handle)]
