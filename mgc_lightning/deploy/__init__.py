"""Deployment: a trained model as one file, run over recordings of any length, and what a season of detections
looks like. Needs models, masks and the front end; never training, the synthetic benchmark or the report.

bundle (the model file: configs, weights, calibration), inference (a bundle as one torch module), calibration
(`mgc calibrate`: scaling and per-type thresholds), detect (`mgc detect` through Trainer.predict), detection_folder
(an output folder's layout, torch-free), partial_tables (per-recording tables while they grow), audio_progress
(progress in hours of audio), recording_times (when and where each recording was made), presence (counts per
deployment, date and hour), season_summary (`mgc summarize`), season_figures (diel plot, daily counts),
summary_page (summary.html).
"""

__all__ = ["audio_progress", "bundle", "calibration", "detect", "detection_folder", "inference", "partial_tables",
           "presence", "recording_times", "season_figures", "season_summary", "summary_page"]
