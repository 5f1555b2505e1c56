"""Training entry point: LightningCLI over the YAML experiments, with MLflow tracking and exact resume.

`mgc fit --config experiments/X.yaml [--experiment-name NAME] [--ckpt_path PATH|last]`. Resuming restores weights,
optimizer, scheduler and epoch (Lightning) and continues the same MLflow run (the run id travels in the checkpoint).
`last` means the newest last.ckpt of a run with the same experiment and run name, which holds its last finished
epoch (stopping.LastCheckpoint); a checkpoint of another model configuration is refused before anything is written.
`mgc test --ckpt_path PATH|best|last` tests a checkpoint in an evaluation run of its own, linked to the training run,
so the training run stays as it finished. A checkpoint whose run is in another MLflow store is tested, or resumed, in
a new run tagged with where it came from.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

from lightning.pytorch import Callback
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.model_helpers import is_overridden

from ..core.checkpoints import check_model_class, load_checkpoint
from ..core.errors import InputError
from ..core.stopping import LastCheckpoint, StopAtBatchEnd
from ..models.precision import device_defaults
from .overrides import without_init_args
from .tracking import (
    DATASET_TAG, EVALUATES_TAG, CheckpointMetadata, ConfigToMLflow, MLflowLogger, evaluation_run_settings, find_run,
    from_elsewhere_tags, mlflow_client, read_checkpoint_metadata, where_to_find,
)

CHECKPOINT_ROOT = Path("checkpoints")
# Model settings that may differ between a checkpoint and the config that resumes or tests it: they do not change
# what the weights mean (optimiser settings, where the first weights came from, compiling).
FREE_SETTINGS = {"lr", "weight_decay", "pretrained", "pretrained_path", "init_from", "compile"}
# ckpt_path values that Lightning resolves itself ("last" and "best" are resolved here first, see parse_arguments)
LIGHTNING_CHECKPOINT_KEYWORDS = ("last", "best", "hpc", "registry")


def find_checkpoint(root: Path, experiment: str, run_name: str | None, which: str = "last") -> Path:
    """The newest `last.ckpt` (which="last") or best checkpoint (which="best") of the runs of one MLflow experiment
    with this run name (any name when None): never another experiment's or another model's."""
    client = mlflow_client()
    found = client.get_experiment_by_name(experiment)
    named = f" named {run_name!r}" if run_name else ""
    if found is None:
        raise FileNotFoundError(f"no MLflow experiment {experiment!r} yet, so no {which} checkpoint to resume or test; "
                                "pass the checkpoint path to --ckpt_path")
    query = f"tags.mlflow.runName = '{run_name}'" if run_name else ""
    runs = [r for r in client.search_runs([found.experiment_id], filter_string=query, max_results=10_000)
            if not r.data.tags.get(EVALUATES_TAG)]
    if which == "best":
        paths = [Path(r.data.tags["checkpoint/best"]) for r in runs if r.data.tags.get("checkpoint/best")]
    else:
        paths = [root / found.experiment_id / r.info.run_id / "checkpoints" / "last.ckpt" for r in runs]
    paths = [p for p in paths if p.is_file()]
    if not paths:
        raise FileNotFoundError(f"no {which} checkpoint of a run{named} of experiment {experiment!r} under {root}; "
                                "pass the checkpoint path to --ckpt_path")
    return max(paths, key=lambda p: p.stat().st_mtime)


def model_differences(checkpoint: dict, model_config) -> list[str]:
    """Model settings in which a loaded checkpoint differs from the configured model (`class_path` + `init_args`),
    except FREE_SETTINGS; empty when the checkpoint's weights fit this configuration."""
    stored = checkpoint.get("hyper_parameters") or {}
    wanted = dict(model_config.get("init_args") or {})
    differences = []
    class_path = stored.get("_class_path")
    if class_path and class_path != model_config.get("class_path"):
        differences.append(f"model {class_path} there, {model_config.get('class_path')} here")
    for key in sorted(set(stored) & set(wanted) - FREE_SETTINGS):
        if key.startswith("_"):
            continue
        there, here = _plain(stored[key]), _plain(wanted[key])
        if there != here:
            differences.append(f"{key} {there!r} there, {here!r} here")
    return differences


def _plain(value):
    """Compare tuples as lists and mappings (jsonargparse Namespaces included) as dicts."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _logger_args(config):
    """init_args of the configured MLflow logger (the first one), or None."""
    logger = config["trainer"].get("logger")
    logger = logger[0] if isinstance(logger, list) else logger
    return getattr(logger, "init_args", None) if logger is not None else None


class MGCLightningCLI(LightningCLI):
    """LightningCLI that resolves `--ckpt_path last|best` within the experiment and run name, refuses a checkpoint of
    another model configuration, continues the checkpoint's MLflow run when resuming, tests in a linked evaluation
    run, tests the best checkpoint after every fit of a model that has a test step, and says where the run is."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--experiment-name", type=str | None, default=None,
                            help="MLflow experiment of the run (default: the logger's experiment_name in the YAML); "
                                 "give your own data its own experiment")
        parser.add_argument("--link-best", type=str | None, default=None,
                            help="after fit, make this path a link to the best checkpoint (a stable file for make)")

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        if not self.config.get("subcommand"):
            return
        config = self.config[self.config["subcommand"]]
        logger = _logger_args(config)
        if config.get("experiment_name") and logger is not None:
            logger["experiment_name"] = config["experiment_name"]
        self._resolve_checkpoint(config, logger)
        self._check_callbacks(config)
        self._check_checkpoint(config)
        self._check_data_inputs(config)

    def _resolve_checkpoint(self, config, logger) -> None:
        """`last` / `best` within the experiment and run name; a checkpoint of another model is refused here, before
        anything is written."""
        ckpt = config.get("ckpt_path")
        if not ckpt:
            return
        if ckpt in ("last", "best"):
            if ckpt == "best" and self.config["subcommand"] == "fit":
                raise ValueError("--ckpt_path best resumes nothing: training continues from `last` or a path")
            root = Path(config["trainer"].get("default_root_dir") or CHECKPOINT_ROOT)
            experiment = logger.get("experiment_name") if logger is not None else None
            run_name = logger.get("run_name") if logger is not None else None
            if experiment is None:
                raise ValueError(f"--ckpt_path {ckpt} needs an MLflow logger with an experiment_name")
            config["ckpt_path"] = str(find_checkpoint(root, experiment, run_name, ckpt))

    @staticmethod
    def _check_callbacks(config) -> None:
        """`save_last` is refused: last.ckpt is LastCheckpoint's, written after every epoch; a monitored callback's
        would be written only on improvement, as last-v1.ckpt beside it."""
        callbacks = config["trainer"].get("callbacks") or []
        for callback in callbacks if isinstance(callbacks, list) else [callbacks]:
            if (getattr(callback, "init_args", None) or {}).get("save_last"):
                raise InputError(f"trainer.callbacks: {callback.class_path.rsplit('.', 1)[-1]} save_last is not "
                                 "needed: `mgc fit` writes last.ckpt after every epoch; remove save_last")

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
            checkpoint = load_checkpoint(path)  # read once, as weights only, for both checks
            check_model_class(path, checkpoint, class_path, "checkpoint of this experiment's model")
            differences = model_differences(checkpoint, model) if model is not None else []
            if differences:
                raise ValueError(f"{path} holds another model than this config ({'; '.join(differences)}): pass "
                                 "that model's config, or a checkpoint of this one")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        logger = _logger_args(config)
        if logger is None:
            return
        manifest = (config["data"].get("init_args") or {}).get("manifest") if config.get("data") else None
        if manifest:
            logger["tags"] = {**(logger.get("tags") or {}), DATASET_TAG: str(Path(manifest).resolve())}
        if not config.get("ckpt_path"):
            return
        run_id = read_checkpoint_metadata(config["ckpt_path"])["mlflow_run_id"]
        if not run_id:
            return
        if self.subcommand == "fit":
            if find_run(mlflow_client(logger.get("tracking_uri")), run_id) is not None:
                logger["run_id"] = run_id
            else:  # a checkpoint from another store continues in a new run that says where it came from
                logger["tags"] = {**(logger.get("tags") or {}), **from_elsewhere_tags(config["ckpt_path"], run_id)}
        else:
            preset = config["data"]["init_args"].get("preset", "origin")
            settings = evaluation_run_settings(run_id, manifest, preset, config["ckpt_path"], logger.get("run_name"),
                                               logger.get("tracking_uri"))
            if config.get("experiment_name"):
                settings["experiment_name"] = config["experiment_name"]
            for key, value in settings.items():
                logger[key] = value

    def after_fit(self) -> None:
        datamodule = self.datamodule
        has_test_data = datamodule is not None and len(getattr(datamodule, "datasets", {}).get("test", ())) > 0
        callback = self.trainer.checkpoint_callback  # the configured (monitored) one, before LastCheckpoint
        if has_test_data and is_overridden("test_step", self.model) and not self.trainer.fast_dev_run:
            self.trainer.test(self.model, datamodule=datamodule, ckpt_path=callback.best_model_path, weights_only=True)
        link = self.config[self.subcommand].get("link_best")
        if link and callback is not None and callback.best_model_path and self.trainer.is_global_zero:
            link_atomically(Path(callback.best_model_path), Path(link))
        self._say_where(Path(callback.dirpath) if callback is not None else None)

    def after_test(self) -> None:
        ckpt = self.config[self.subcommand].get("ckpt_path")
        self._say_where(Path(ckpt).parent if ckpt else None)

    def _say_where(self, checkpoints: Path | None) -> None:
        if self.trainer.is_global_zero and isinstance(self.trainer.logger, MLflowLogger):
            print(where_to_find(self.trainer.logger.run_id, checkpoints))


def link_atomically(target: Path, link: Path) -> None:
    """Point `link` at `target` (absolute), replacing any earlier link in one step."""
    link.parent.mkdir(parents=True, exist_ok=True)
    temporary = link.with_name(f".{link.name}.{os.getpid()}")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(target.resolve())
    os.replace(temporary, link)




def run_lightning(args: list[str] | None, callbacks: Sequence[Callback] = ()) -> MGCLightningCLI:
    """`mgc fit` / `mgc test`; `callbacks` join every trainer's own (the callers, above training in the layers, pass
    evaluate.callbacks.run_callbacks(): what the models publish becomes prediction tables and figures)."""
    return MGCLightningCLI(
        save_config_callback=ConfigToMLflow,
        save_config_kwargs={"save_to_log_dir": False},
        trainer_defaults={
            "callbacks": [CheckpointMetadata(), StopAtBatchEnd(), LastCheckpoint(), *callbacks],
            "default_root_dir": str(CHECKPOINT_ROOT),
            "logger": {"class_path": f"{MLflowLogger.__module__}.{MLflowLogger.__qualname__}"},
            **device_defaults(),
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

    from ..core.checkpoints import checked_path

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


def configured_value(args: list[str], key: str, default: object = None) -> object:
    """The value a Lightning command line gives a dotted key (`data.init_args.preset`): its last option, spelt with
    or without `init_args` (jsonargparse takes both), else the last config file that sets it, else `default`."""
    spellings = {key, without_init_args(key)}
    value = _ABSENT
    for index, arg in enumerate(args):
        name, _, given = arg.removeprefix("--").partition("=")
        if arg.startswith("--") and name in spellings:
            value = given if given else (args[index + 1] if index + 1 < len(args) else _ABSENT)
    if value is not _ABSENT:
        return value
    found = [v for v in (_value_at(config, key) for config in read_config_files(args).values()) if v is not _ABSENT]
    return found[-1] if found else default


def argument_error_line(message: str, args: list[str], configs: dict[str, object]) -> str:
    """jsonargparse's (multi-line, nested) parse error as one line that names the key, the problem and the config
    file, or the command-line option, that set the key."""
    lines = [line.strip().lstrip("- ") for line in message.strip().splitlines() if line.strip()]
    keys = re.findall(r'Parser key "([^"]+)"', message)
    unknown = re.search(r"(?:does not accept option|Option) '([^']+)'", message)
    if not keys and unknown is None:
        return _raised_message(message, lines)
    nested = ".init_args." if "class_path" in message else "."
    key = nested.join(keys + ([unknown.group(1)] if unknown and keys else [])) or unknown.group(1)
    given = _given_value(message, lines, keys)
    problem = f"unknown key {key!r}" if unknown else _problem(lines, keys, key, given)
    problem = re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", problem).replace("Expected a ", "expected ")
    source = _where_set(key, given, args, configs)
    if source.startswith("option --"):
        problem = problem.removeprefix(f"{key}: ")
    return f"{source}: {problem} (see `mgc {args[0] if args else 'fit'} --help`)"


def _raised_message(message: str, lines: list[str]) -> str:
    """A message naming no key (e.g. a class's own check failed while it was built): that check's line alone when
    there is one, else every line."""
    raised = [line for line in message.splitlines() if line.strip().startswith("- ")
              and "Expected a <class 'NoneType'>" not in line]
    return raised[0].strip()[2:] if len(raised) == 1 else " ".join(lines)


def _given_value(message: str, lines: list[str], keys: list[str]) -> str | None:
    """The value refused: a nested key's is on the `Got value:` line, a plain key's on `Given value:`."""
    if len(keys) > 1:
        got = re.search(r"Got value: (.*)$", message, re.MULTILINE)
        return got.group(1).strip() if got else None
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("Given value:")), None)


def _problem(lines: list[str], keys: list[str], key: str, given: str | None) -> str:
    """`key: what was expected`, with the value given for a plain key."""
    after = lines.index(next(line for line in lines if f'Parser key "{keys[-1]}"' in line)) + 1
    detail = lines[after] if len(keys) > 1 else next((line for line in lines if line.startswith("Expected")),
                                                       lines[after] if after < len(lines) else "invalid")
    return f"{key}: {detail}" + (f", given {given!r}" if given is not None and len(keys) == 1 else "")


def _where_set(key: str, given: str | None, args: list[str], configs: dict[str, object]) -> str:
    """The config file or option whose value for `key` is the one refused, else the last one that sets it."""
    sources = [(name, _value_at(config, key)) for name, config in configs.items()]
    sources = [(f"option --{key}", value) if name is None else (name, value)
               for name, value in [*sources, (None, _option_value(args, key))] if value is not _ABSENT]
    refused = [name for name, value in sources if given is not None and str(value) == given]
    return (refused or [name for name, _ in sources] or ["the command line"])[-1]
