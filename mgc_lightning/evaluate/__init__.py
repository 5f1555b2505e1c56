"""Evaluation: what a trained model's runs leave beside their metrics, and how well it does where it was not trained.

callbacks (per-window test predictions, bootstrap intervals, confusion matrices and mask panels, written from what
the models publish), ood (a classifier checkpoint tested on another front end or dataset, in a linked MLflow run),
intervals (cluster-bootstrap confidence intervals), event_scores (event-level precision and recall of detections
against a benchmark's calls), energy_detector (the classical band-energy floor), figures (mask panels, confusion
matrices), few_shot (the segmenter's mask quality against how many high-quality masks, chosen at random or by its
uncertainty), real_noise (false alarms and porpoise recall on the real-noise test set).
"""

__all__ = ["callbacks", "energy_detector", "event_scores", "few_shot", "figures", "intervals", "ood", "real_noise"]
