"""mgc report and pipeline: the paper's tables, and its protocol end to end."""

from __future__ import annotations

import argparse


def _cmd_report(args: argparse.Namespace) -> int:
    from ..report.comparison import write_report

    report = write_report(args.experiment, args.out, args.train_preset)
    print(report.read_text())
    print(f"written to {report}")
    return 0


def _cmd_pipeline(args: argparse.Namespace) -> int:
    from ..pipeline.config import PipelineConfig
    from ..pipeline.stages import Pipeline
    from ..report.comparison import collect_runs, summary_text

    config = PipelineConfig.from_yaml(args.config, seeds=args.seeds)
    pipeline = Pipeline(config, mask_curve=args.mask_curve, learning_curve=args.learning_curve,
                        few_shot_curve=args.few_shot_curve)
    report = pipeline.run()
    print(summary_text(collect_runs(config.experiment, pipeline.tracking_uri), config.presets[0],
                       pipeline.reported_headline))
    print(f"Stage wall times ({pipeline.times_path}; the run that did each stage's work):\n{pipeline.times_table()}")
    if pipeline.output_dir:
        print(f"Report: {report}\nEverything but the data is in {pipeline.output_dir}; browse the runs with "
              f"MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow server --backend-store-uri {pipeline.tracking_uri} "
              "--workers 1  (then open http://127.0.0.1:5000 and the experiment "
              f"{config.experiment!r})")
    else:
        print(f"Report: {report}\nBrowse the runs: make mlflow-ui EXPERIMENT={config.experiment}  (it prints the "
              "address of the experiment's runs)")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """report and pipeline: the paper's tables, and its protocol end to end."""
    sub = commands.add_parser("report", help="tables and figures from an MLflow experiment's runs")
    sub.add_argument("--experiment", required=True)
    sub.add_argument("--out", default="report")
    sub.add_argument("--train-preset", default="origin")
    sub.set_defaults(run=_cmd_report)

    sub = commands.add_parser("pipeline", help="run the whole protocol from a pipeline YAML (make demo, make paper)")
    sub.add_argument("config", help="e.g. experiments/pipeline_demo.yaml")
    sub.add_argument("--seeds", type=int, nargs="+", help="training seeds instead of the YAML's (finished seeds are "
                                                          "kept: `--seeds 0 1 2` after a one-seed run adds two)")
    sub.add_argument("--mask-curve", action="store_true", help="also train the YAML's mask_curve_model on exact masks "
                                                               "degraded to each IoU of its mask_curve, and on the "
                                                               "exact masks themselves (a perfect segmenter)")
    sub.add_argument("--learning-curve", action="store_true", help="also train the YAML's learning_curve_models on "
                                                                   "each learning_curve number of labelled windows")
    sub.add_argument("--few-shot-curve", action="store_true", help="also train the segmenter on each few_shot_curve "
                                                                   "number of high-quality masks, drawn at random and "
                                                                   "by its uncertainty")
    sub.set_defaults(run=_cmd_pipeline)
