"""mgc-lightning: mask-guided classification of marine mammal sounds in hydrophone recordings."""

__version__ = "0.1.0"
