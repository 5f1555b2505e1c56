"""What training reads: windows with their images, masks and labels.

datamodules (datasets and the LightningDataModules of the segmenter and the classifiers, which fill the cache
first), augment (training-time front-end looks: frequency warps, stretches, power and gain control).
"""

__all__ = ["augment", "datamodules"]
