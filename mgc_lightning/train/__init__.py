"""Training: `mgc fit` and `mgc test` through LightningCLI over the YAML experiments, tracked in MLflow.

lightning_cli (the LightningCLI entry: exact resume, checked checkpoints, one-line config errors), tracking (the
MLflow logger, run records and checkpoint metadata callbacks), overrides (a run's dotted-key options).
"""

__all__ = ["lightning_cli", "overrides", "tracking"]
