"""Recordings and their labels: what a window of audio is before any front end sees it.

reading (safe, windowed reads of WAV/FLAC of any length and rate), manifest (one CSV row per window, validated, and
the split of windows by recording or deployment: SplitConfig), raven (Raven selection tables -> manifest rows and
annotation boxes).
"""

__all__ = ["manifest", "raven", "reading"]
