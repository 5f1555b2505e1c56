"""The front end: audio windows -> spectrogram images, and the cache that keeps them.

config (SpectrogramConfig and the named presets, torch-free), spectrogram (the transform, in torch, batched on CPU
or GPU), cache (per-preset stores of images and masks keyed by the config's hash, filled by a resumable job).
"""

__all__ = ["cache", "config", "spectrogram"]
