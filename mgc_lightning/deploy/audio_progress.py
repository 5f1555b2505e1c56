"""One progress bar for a run over many recordings, in hours of audio: what a deployment's analysis is measured in.

Its total is the length of the recordings still to analyse, read from their headers before the run starts (files an
earlier run finished are not in it), so it can say how many hours are left and when the run will end.
"""

from __future__ import annotations

import time

from tqdm import tqdm


class AudioHoursBar:
    """Hours of audio done out of the total, hours left, the time left and the speed in times real time. A resumed
    recording counts from where it resumes (the hours an earlier run analysed leave the total: they are neither this
    run's work nor left to do), and a failed one's unanalysed rest leaves the total too."""

    def __init__(self, seconds: dict[int, float]):
        self.seconds = seconds  # each recording's length, by its index in the run
        self.reached: dict[int, float] = {}  # how far into each recording this run has gone (s)
        self.started = time.perf_counter()
        self.bar = tqdm(total=sum(seconds.values()) / 3600, desc="detect",
                        bar_format="{desc}: {percentage:3.0f}%|{bar:20}| {n:.3f}/{total:.3f} h of audio{postfix} "
                                   "[{elapsed}<{remaining}]")

    def advance(self, index: int, began_s: float, reached_s: float, last: bool) -> None:
        """A batch of recording `index` is done: this run began it at `began_s` and has now reached `reached_s`."""
        if index not in self.reached:
            self.reached[index] = began_s
            self.bar.total -= began_s / 3600
        reached_s = self.seconds[index] if last else min(reached_s, self.seconds[index])
        self._update(reached_s - self.reached[index])
        self.reached[index] = reached_s

    def drop(self, index: int) -> None:
        """Recording `index` failed: the rest of it will not be analysed."""
        self.bar.total -= (self.seconds[index] - self.reached.get(index, 0.0)) / 3600
        self._update(0.0)

    def _update(self, seconds: float) -> None:
        self.bar.update(seconds / 3600)
        self.bar.total = max(self.bar.total, self.bar.n)  # sums of float hours can drift by 1e-16: no negative ETA
        speed = self.bar.n * 3600 / max(time.perf_counter() - self.started, 1e-9)
        left = max(self.bar.total - self.bar.n, 0.0)
        self.bar.set_postfix_str(f"{left:.3f} h left, {speed:.1f}x real time")

    def close(self) -> None:
        self.bar.close()
