"""``python run.py [flags]`` or ``python run.py config.json``: the flags parsed into camtl's argument
dataclasses, every error one line with exit code 2.

Before the dataclasses fill in their defaults, the flags as given are checked for saying one thing twice:
one flag given twice with different values (argparse keeps the last, a list flag's last list too), an
old name of the authors' README beside its new name (``--per_gpu_train_batch_size`` and
``--per_device_train_batch_size``), two ways of setting the warmup or the length of training, an interval
for a schedule that is off (``--eval_steps`` with ``--eval_strategy no``). Given both, one would win
without a word. Training flags given without ``--do_train`` are named in a warning
(``--resume_from_checkpoint``, which would resume nothing, is refused), and a path flag given an empty
value (an unset script variable), which would mean the current directory, is refused.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from transformers import HfArgumentParser

from camtl.errors import UsageError
from camtl.training.arguments import CaMtlTrainingArguments, DataArguments, ModelArguments
from camtl.training.config_file import config_file_to_flags
from camtl.training.flag_checks import shown_value

logger = logging.getLogger(__name__)

# An old flag (the authors' README, an older transformers) -> the flag that now says the same thing.
_SAME_SETTING = {
    "per_gpu_train_batch_size": "per_device_train_batch_size",
    "per_gpu_eval_batch_size": "per_device_eval_batch_size",
    "no_cuda": "use_cpu",
    "warmup_proportion": "warmup_steps",
}
# An interval -> the schedule it applies to (only the "steps" schedule reads it).
_INTERVALS = {
    "eval_steps": "eval_strategy",
    "save_steps": "save_strategy",
    "logging_steps": "logging_strategy",
}
# Flags that only training reads: a run without --do_train names them in a warning and goes on.
_TRAINING_ONLY = (
    "learning_rate", "num_train_epochs", "max_steps", "warmup_steps", "warmup_proportion", "weight_decay",
    "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm", "lr_scheduler_type", "optim",
    "per_device_train_batch_size", "per_gpu_train_batch_size", "gradient_accumulation_steps",
    "head_lr_multiplier", "train_sampling_strategy", "max_train_samples",
    "task_sampling", "use_mt_uncertainty", "uniform_mt_sampling", "percent_of_max_data_size",
    "sampling_temperature", "sampling_weights", "mtu_scoring_mode",
)  # fmt: skip
# Flags that name a file or folder: an empty value would mean the current directory (or the default).
_PATHS = ("model_name_or_path", "data_dir", "task_file", "output_dir", "logging_dir", "features_cache_dir",
          "resume_from_checkpoint")  # fmt: skip


class OneLineErrors(argparse.ArgumentParser):
    """An argparse parser whose errors are one line and exit code 2, like every other bad input."""

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")


class ArgumentParser(HfArgumentParser, OneLineErrors):
    """run.py's parser: HfArgumentParser over camtl's argument dataclasses, with one-line errors."""

    def __init__(self, dataclass_types, **kwargs):
        kwargs.setdefault("prog", "python run.py")  # as the one-line errors and --help name the command
        super().__init__(dataclass_types, **kwargs)


def parse_arguments(argv: list[str]) -> tuple[ModelArguments, DataArguments, CaMtlTrainingArguments]:
    """run.py's flags (or one JSON config file) as its three argument dataclasses, checked."""
    parser = ArgumentParser((ModelArguments, DataArguments, CaMtlTrainingArguments))
    config_file = _config_file(argv)
    if config_file is not None:
        argv = config_file_to_flags(config_file, parser)
    check_flag_conflicts(parser, argv)
    try:
        *parsed, unknown = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    except ValueError as error:  # TrainingArguments' own checks
        raise UsageError(str(error).splitlines()[0]) from None
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return tuple(parsed)


# What a config file may be called: JSON is read; a YAML name is answered with how to convert it.
CONFIG_SUFFIXES = (".json", ".yaml", ".yml")


def _config_file(argv: list[str]) -> Path | None:
    """The config file that ``argv`` is (a first word that is no flag and an existing file or a name ending
    in .json, .yaml or .yml), checked to be JSON and alone; None for flags and other words."""
    first = Path(argv[0]) if argv else None
    if (
        first is None
        or argv[0].startswith("-")
        or not (first.suffix.lower() in CONFIG_SUFFIXES or first.is_file())
    ):
        return None  # flags, or a stray word that argparse names
    if Path(argv[0]).suffix.lower() != ".json":
        raise UsageError(
            f"{argv[0]}: config files are JSON, one object of flag names to values"
            ' ({"do_train": true, ...}): convert it to .json, or pass its settings as flags'
        )
    if len(argv) > 1:
        raise UsageError(
            f"a config file takes no other flags: move {argv[1]} into {argv[0]} or pass every flag"
            " on the command line"
        )
    return Path(argv[0])


class _EveryValue(argparse.Namespace):
    """A namespace that also keeps every value each flag is given, in order: argparse keeps the last."""

    def __init__(self, defaults: dict):
        vars(self).update(defaults, _values={})  # the defaults are no value given

    def __setattr__(self, name: str, value) -> None:
        self._values.setdefault(name, []).append(value)
        super().__setattr__(name, value)


def _given(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[set[str], argparse.Namespace]:
    """The flags named in ``argv`` and every flag's parsed value (the default where not given); a flag
    given twice with different values is refused."""
    defaults = {
        action.dest: action.default for action in parser._actions if action.default is not argparse.SUPPRESS
    }
    values, _ = parser.parse_known_args(argv, namespace=_EveryValue(defaults))
    for name, each in values._values.items():  # one value per time the flag is given (a default: none)
        if any(value != each[0] for value in each[1:]):
            shown = ", then ".join(str(shown_value(value)) for value in each)
            merge = f", or list every value after one --{name}" if isinstance(each[0], list) else ""
            times = "twice" if len(each) == 2 else f"{len(each)} times"
            negated = any(word.split("=", 1)[0] == f"--no_{name}" for word in argv)
            spelled = f", as --{name} and --no_{name}" if negated else ""
            raise UsageError(
                f"--{name} is given {times} with different values ({shown}{spelled}): keep one{merge}"
            )
    named = {word[2:].split("=", 1)[0] for word in argv if word.startswith("--")}
    named |= {name[3:] for name in named if name.startswith("no_") and not hasattr(values, name)}  # --no_x
    return {name for name in named if hasattr(values, name)}, values


def check_flag_conflicts(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Refuse two given flags (or one flag given twice) that set one thing differently, an interval whose
    schedule is off, an empty path, and a resume without training; warn of other training flags unused."""
    given, values = _given(parser, argv)
    _check_paths(values)
    if not values.do_train:
        _check_training_flags(given)
    for old, new in _SAME_SETTING.items():
        if {old, new} <= given and getattr(values, old) != getattr(values, new):
            raise UsageError(
                f"--{old} {shown_value(getattr(values, old))} and --{new} {shown_value(getattr(values, new))}"
                f" set the same thing (--{old} is the old name of --{new}): keep one"
            )
    if {"max_steps", "num_train_epochs"} <= given and values.max_steps > 0:
        raise UsageError(
            f"--max_steps {values.max_steps} and --num_train_epochs {shown_value(values.num_train_epochs)}"
            " set the same thing (the length of training; --max_steps > 0 overrides the epochs): keep one"
        )
    if values.evaluate_during_training:  # it means: evaluate every --logging_steps
        if "eval_strategy" in given and shown_value(values.eval_strategy) != "steps":
            raise UsageError(
                f"--evaluate_during_training evaluates every --logging_steps, --eval_strategy"
                f" {shown_value(values.eval_strategy)} otherwise: keep one"
            )
        if "eval_steps" in given and values.eval_steps != values.logging_steps:
            raise UsageError(
                "--evaluate_during_training evaluates every --logging_steps"
                f" ({shown_value(values.logging_steps)}), not --eval_steps"
                f" {shown_value(values.eval_steps)}: keep one"
            )
        return
    for interval, schedule in _INTERVALS.items():
        changed = interval in given and getattr(values, interval) != parser.get_default(interval)
        if changed and shown_value(getattr(values, schedule)) != "steps":
            raise UsageError(
                f"--{interval} {shown_value(getattr(values, interval))} has no effect with --{schedule}"
                f" {shown_value(getattr(values, schedule))}: add --{schedule} steps, or drop --{interval}"
            )


def _check_paths(values: argparse.Namespace) -> None:
    """Refuse an empty path: "" is the current directory, where nobody means to write a run."""
    for name in _PATHS:
        value = getattr(values, name)
        if value == "" or (isinstance(value, list) and "" in value):
            raise UsageError(
                f"--{name} is empty: give it a path (an unset variable in a script leaves it empty)"
            )


def _check_training_flags(given: set[str]) -> None:
    """A run without --do_train: refuse --resume_from_checkpoint (it would resume nothing), and name the
    training flags given, which change nothing (a training command reused to evaluate keeps working)."""
    if "resume_from_checkpoint" in given:
        raise UsageError(
            "--resume_from_checkpoint needs --do_train: add it to continue training, or drop the flag"
            " (to evaluate or predict with a checkpoint, pass it as --model_name_or_path)"
        )
    unused = [f"--{name}" for name in _TRAINING_ONLY if name in given]
    if unused:
        logger.warning(
            "%s: only training reads them, and this run has no --do_train: ignored", ", ".join(unused)
        )
