"""Masks on the spectrogram grid: what they are, and the jobs that fill each mask source of the cache.

ops (box, candidate, binary and soft masks, the kinds a classifier reads, mask files, agreement metrics), sources
(the mask sources and their dataset-level jobs: candidate masks, box masks, export for refinement, the high-quality
set, agreement with the ideal masks), predict (a trained segmenter's masks for every window: `predicted`), degrade
(exact masks at a chosen quality, for the mask-quality curve). The ideal masks of the synthetic benchmark are drawn
by synth.build, from its stems.
"""

__all__ = ["degrade", "ops", "predict", "sources"]
