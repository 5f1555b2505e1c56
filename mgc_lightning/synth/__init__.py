"""The embedded benchmark: a physically grounded synthetic marine soundscape with exact ground-truth masks.

calls (target sounds), noise (everything else), scene (one recording: noise, calls at drawn SNRs, sensor), config
(the benchmark's sizes and the labelling rule, torch-free), build (a whole dataset on disk, in parallel, resumable,
and its ideal masks), events (the benchmark's events.csv), real_noise (the real-noise test set: real recorded
backgrounds and other species' calls with real porpoise clicks, and which real files it owns).
"""

__all__ = ["build", "calls", "config", "events", "noise", "real_noise", "scene"]
