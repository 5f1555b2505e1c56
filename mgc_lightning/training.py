"""Training entry point: LightningCLI over the YAML experiments, with MLflow tracking and exact resume.

`mgc fit --config experiments/X.yaml [--ckpt_path PATH|last]`. Resuming restores weights, optimizer, scheduler and
epoch (Lightning) and continues the same MLflow run (the run id travels in the checkpoint). `last` means the newest
last.ckpt of the same MLflow experiment under the checkpoint root. `mgc test --ckpt_path PATH` logs into the run
that trained the checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities.model_helpers import is_overridden

from .checkpoints import check_model_class, load_checkpoint
from .errors import InputError
from .tracking import CheckpointMetadata, ConfigToMLflow, MLflowLogger, read_checkpoint_metadata

CHECKPOINT_ROOT = Path("checkpoints")
# ckpt_path values that Lightning resolves itself ("last" is resolved here first, see before_instantiate_classes)
LIGHTNING_CHECKPOINT_KEYWORDS = ("last", "best", "hpc", "registry")


def newest_last_checkpoint(root: Path, experiment: str | None = None) -> Path:
    """The most recently written last.ckpt under root (optionally only of one MLflow experiment's runs)."""
    candidates = sorted(root.glob("**/last.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    for candidate in candidates:
        if experiment is None or candidate.parts[len(root.parts)] == experiment:
            return candidate
    raise FileNotFoundError(f"no last.ckpt under {root}{' for experiment ' + experiment if experiment else ''}; "
                            "pass the checkpoint path to --ckpt_path")


class MGCLightningCLI(LightningCLI):
    """LightningCLI that reads `--ckpt_path` safely before Lightning does, resolves `--ckpt_path last`, logs into the
    checkpoint's MLflow run when resuming or testing, and tests the best checkpoint after every fit of a model that
    has a test step."""

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        if self.config.get("subcommand"):
            self._check_checkpoint(self.config[self.config["subcommand"]])
            self._check_data_inputs(self.config[self.config["subcommand"]])

    @staticmethod
    def _check_data_inputs(config) -> None:
        """The data module's check of its inputs (e.g. every mask PNG) from its settings, before a model or an MLflow
        run exists: a bad file then costs seconds, not an epoch and a FAILED run."""
        import importlib

        data = config.get("data")
        if data is None or not getattr(data, "class_path", None):
            return
        module, name = data.class_path.rsplit(".", 1)
        check = getattr(getattr(importlib.import_module(module), name, None), "check_inputs", None)
        if check is not None:
            check(data.init_args.as_dict() if data.init_args is not None else {})

    @staticmethod
    def _check_checkpoint(config) -> None:
        """Checkpoints load as weights only (a file's code never runs): the checkpoint is read that way here, before
        Lightning reads it to take over its hyperparameters, and must hold the configured model class."""
        if config.get("weights_only") is False:
            raise InputError("--weights_only false is refused: checkpoints load as weights only, so that no code "
                             "inside a file can run")
        config["weights_only"] = True
        path = config.get("ckpt_path")
        if path and path not in LIGHTNING_CHECKPOINT_KEYWORDS:
            model = config.get("model")
            class_path = getattr(model, "class_path", None) if model is not None else None
            check_model_class(path, load_checkpoint(path), class_path, "checkpoint of this experiment's model")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        if not config.get("ckpt_path"):
            return
        logger = config["trainer"].get("logger")
        logger_config = logger[0] if isinstance(logger, list) else logger
        experiment = None
        if logger_config is not None and getattr(logger_config, "init_args", None) is not None:
            experiment = logger_config.init_args.get("experiment_name")
        if config["ckpt_path"] == "last":
            root = Path(config["trainer"].get("default_root_dir") or CHECKPOINT_ROOT)
            experiment_id = _experiment_id(experiment) if experiment else None
            config["ckpt_path"] = str(newest_last_checkpoint(root, experiment_id))
        run_id = read_checkpoint_metadata(config["ckpt_path"])["mlflow_run_id"]
        if run_id and logger_config is not None and getattr(logger_config, "init_args", None) is not None:
            logger_config.init_args["run_id"] = run_id


    def after_fit(self) -> None:
        datamodule = self.datamodule
        has_test_data = datamodule is not None and len(getattr(datamodule, "datasets", {}).get("test", ())) > 0
        if has_test_data and is_overridden("test_step", self.model) and not self.trainer.fast_dev_run:
            self.trainer.test(self.model, datamodule=datamodule, ckpt_path="best", weights_only=True)


def _experiment_id(name: str) -> str | None:
    from mlflow.tracking import MlflowClient

    from .tracking import default_tracking_uri

    experiment = MlflowClient(default_tracking_uri()).get_experiment_by_name(name)
    return experiment.experiment_id if experiment else None


def run_lightning(args: list[str] | None) -> MGCLightningCLI:
    return MGCLightningCLI(
        save_config_callback=ConfigToMLflow,
        save_config_kwargs={"save_to_log_dir": False},
        trainer_defaults={
            "callbacks": [CheckpointMetadata()],
            "default_root_dir": str(CHECKPOINT_ROOT),
            "logger": {"class_path": f"{MLflowLogger.__module__}.{MLflowLogger.__qualname__}"},
        },
        subclass_mode_model=True,
        subclass_mode_data=True,
        parser_kwargs={"exit_on_error": False},  # parse errors raise; `mgc` turns them into one line
        args=args,
    )


def config_files(args: list[str]) -> list[str]:
    """The --config / -c files of a Lightning command line, in order."""
    files = []
    for index, arg in enumerate(args):
        if arg in ("--config", "-c") and index + 1 < len(args):
            files.append(args[index + 1])
        elif arg.startswith("--config="):
            files.append(arg.split("=", 1)[1])
    return files


def read_config_files(args: list[str]) -> dict[str, object]:
    """Each config file of the command line parsed as YAML, with a one-line InputError naming the file when it is
    missing, is not YAML or is not a mapping: found before Lightning starts, which would not name the file."""
    import yaml

    from .checkpoints import checked_path

    configs = {}
    for name in config_files(args):
        path = checked_path(name, "config file")
        try:
            content = yaml.safe_load(path.read_text())
        except UnicodeDecodeError as error:
            raise InputError(f"{path}: config file is not text ({error.reason}); pass a YAML file") from error
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise InputError(f"{path}: config file is not valid YAML{where}: {problem}") from error
        if content is not None and not isinstance(content, dict):
            raise InputError(f"{path}: a config file must be a YAML mapping (key: value lines), got a "
                             f"{type(content).__name__}")
        configs[name] = content or {}
    return configs


_ABSENT = object()


def _value_at(config: object, key: str) -> object:
    """The value a parsed config file gives the dotted key (init_args levels may be left out), or _ABSENT."""
    for part in key.split("."):
        if isinstance(config, dict) and part not in config and isinstance(config.get("init_args"), dict):
            config = config["init_args"]
        if not isinstance(config, dict) or part not in config:
            return _ABSENT
        config = config[part]
    return config


def _option_value(args: list[str], key: str) -> object:
    """The value the last --key option of the command line gives, or _ABSENT."""
    value = _ABSENT
    for index, arg in enumerate(args):
        if arg == f"--{key}" and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith(f"--{key}="):
            value = arg.split("=", 1)[1]
    return value


def argument_error_line(message: str, args: list[str], configs: dict[str, object]) -> str:
    """jsonargparse's (multi-line, nested) parse error as one line that names the key, the problem and the config
    file, or the command-line option, that set the key."""
    import re

    lines = [line.strip().lstrip("- ") for line in message.strip().splitlines() if line.strip()]
    keys = re.findall(r'Parser key "([^"]+)"', message)
    unknown = re.search(r"(?:does not accept option|Option) '([^']+)'", message)
    if not keys and unknown is None:  # e.g. a class's own check failed while it was built: keep that message
        raised = [line for line in message.splitlines() if line.strip().startswith("- ")
                  and "Expected a <class 'NoneType'>" not in line]
        return raised[0].strip()[2:] if len(raised) == 1 else " ".join(lines)
    nested = ".init_args." if "class_path" in message else "."
    key = nested.join(keys + ([unknown.group(1)] if unknown and keys else [])) or unknown.group(1)
    given = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("Given value:")), None)
    if len(keys) > 1:
        got = re.search(r"Got value: (.*)$", message, re.MULTILINE)
        given = got.group(1).strip() if got else None
    if unknown:
        problem = f"unknown key {key!r}"
    else:
        after = lines.index(next(line for line in lines if f'Parser key "{keys[-1]}"' in line)) + 1
        detail = lines[after] if len(keys) > 1 else next((line for line in lines if line.startswith("Expected")),
                                                           lines[after] if after < len(lines) else "invalid")
        problem = f"{key}: {detail}" + (f", given {given!r}" if given is not None and len(keys) == 1 else "")
    problem = re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", problem).replace("Expected a ", "expected ")
    # where the key was set: the file or option whose value is the one refused, else the last one that sets it
    sources = [(name, _value_at(config, key)) for name, config in configs.items()]
    sources = [(f"option --{key}", value) if name is None else (name, value)
               for name, value in [*sources, (None, _option_value(args, key))] if value is not _ABSENT]
    refused = [name for name, value in sources if given is not None and str(value) == given]
    source = (refused or [name for name, _ in sources] or ["the command line"])[-1]
    if source.startswith("option --"):
        problem = problem.removeprefix(f"{key}: ")
    return f"{source}: {problem} (see `mgc {args[0] if args else 'fit'} --help`)"
