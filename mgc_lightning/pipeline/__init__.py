"""The paper's protocol end to end (`mgc pipeline`, `make demo`), as resumable stages.

config (PipelineConfig: the YAML's settings, typed and checked), stages (Pipeline: each stage, its record under
<data_dir>/pipeline/ and its wall time).
"""

__all__ = ["config", "stages"]
