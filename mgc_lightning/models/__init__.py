"""Neural networks and LightningModules only: the segmenter that draws masks and the classifiers that use them.
Dataset-wide jobs that run them live in masks/, evaluate/ and deploy/; what they publish (models.hooks) is written
by evaluate.callbacks.

classifier (ClassifierModule: baselines and mask-guided classification), segmenter (SegmenterModule), encoders (the
spectrogram and mask branches), fusion (concat, gated, cross-attention), inputs (ImageNet input, local weights),
optim (AdamW with warm-up and cosine decay), metrics (joint accuracy and per-type scores, torchmetrics), precision
(number formats by hardware), hooks (how a module hands its outputs to the trainer's callbacks).
"""

__all__ = ["classifier", "encoders", "fusion", "hooks", "inputs", "metrics", "optim", "precision", "segmenter"]
