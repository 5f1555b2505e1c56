"""mgc-lightning: mask-guided classification of marine mammal sounds in hydrophone recordings.

One subpackage per stage of the data flow, lowest layer first (imports only go down; pyproject.toml's import-linter
contracts check it in `make test`):

    core      labels, errors, atomic writes, checkpoint reading, run control shared by every stage
    audio     recordings, the manifest and its splits, Raven selection tables
    frontend  SpectrogramConfig and presets, the spectrogram transform, the cache
    synth     the embedded synthetic benchmark            masks  mask operations and the mask-source jobs
    data      datasets and LightningDataModules, front-end looks
    models    nn.Modules and LightningModules only
    train     the Lightning CLI entry (`mgc fit/test`) and MLflow tracking
    deploy    bundle, calibration, detection, season summaries   annotate  the browser app for masks
    evaluate  run outputs, out-of-distribution tests, intervals, event scores
    report    runs -> tables and figures
    pipeline  the paper's protocol as resumable stages
    cli       the `mgc` command
"""

__version__ = "0.1.0"
