"""The embedded benchmark: a physically grounded synthetic marine soundscape with exact ground-truth masks.

calls.py (target sounds), noise.py (everything else), scene.py (one recording: noise, calls at drawn SNRs, sensor),
build.py (a whole dataset on disk, in parallel, resumable).
"""
