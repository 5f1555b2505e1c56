"""The base every stage stands on; it imports no other stage.

labels (the three sound types and eight joint classes, torch-free), errors (the one exception for a user's mistake),
atomic (files written whole or not at all), checkpoints (checkpoints read as weights only, and the keys `mgc fit`
stores in them), mlflow_store (where runs are tracked), interrupts (SIGINT/SIGTERM as exit statuses), stopping (how
Lightning loops stop at a batch end and keep last.ckpt), sharding (which share of a dataset-wide job a DDP process
does).
"""

__all__ = ["atomic", "checkpoints", "errors", "interrupts", "labels", "mlflow_store", "sharding", "stopping"]
