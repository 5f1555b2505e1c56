"""The diel plot of docs/detection.md ("The season summary"), drawn by the season summary's own code from a synthetic
six-week deployment: windows per hour from a duty cycle, detections drawn from made-up rhythms (whistles mostly at
night, beluga clicks during a two-week visit, porpoise clicks at dawn and dusk), and three days the recorder missed.

    .venv/bin/python scripts/season_summary_example.py docs/season_summary.png
"""

from __future__ import annotations

import argparse
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np

from mgc_lightning.deploy.season_figures import diel_figure, png_bytes

FIRST_DAY, DAYS, GAP = date(2024, 6, 1), 42, range(20, 23)
WINDOWS_PER_HOUR = 600  # 10 minutes an hour in 1 s windows


def share(day: int, hour: int) -> tuple[float, float, float]:
    """Expected share of windows with each sound type (whistle, beluga click, porpoise click) in that hour."""
    night = 0.5 + 0.5 * np.cos(2 * np.pi * (hour - 2) / 24)
    visit = np.exp(-(((day - 12) / 5) ** 2))
    twilight = max(np.exp(-(((hour - 5) / 1.5) ** 2)), np.exp(-(((hour - 21) / 1.5) ** 2)))
    return 0.25 * night * visit + 0.01, 0.3 * visit * (0.4 + 0.6 * night), 0.15 * twilight * (day > 8) + 0.005


def hourly_rows(seed: int = 0) -> list[list]:
    """Rows of a deployment's presence_hourly.csv: date, hour, windows, windows with each sound type."""
    rng = np.random.default_rng(seed)
    rows = []
    for day in (d for d in range(DAYS) if d not in GAP):
        for hour in range(24):
            positives = [int(rng.binomial(WINDOWS_PER_HOUR, p)) for p in share(day, hour)]
            moment = datetime.combine(FIRST_DAY + timedelta(days=day), datetime.min.time()).replace(hour=hour)
            rows.append([moment.date().isoformat(), hour, WINDOWS_PER_HOUR, *positives])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="PNG to write, e.g. docs/season_summary.png")
    out = parser.parse_args().out
    out.write_bytes(png_bytes(diel_figure("example deployment (synthetic): detections by hour of day", hourly_rows())))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
