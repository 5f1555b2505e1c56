"""The report: an MLflow experiment's runs -> REPORT.md with the paper's tables and figures.

comparison (runs grouped by the data they were tested on, intervals, paired differences, the headline, the curves).
"""

__all__ = ["comparison"]
