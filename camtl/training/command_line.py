"""``python run.py [flags]`` or ``python run.py config.json``: the flags parsed into camtl's argument
dataclasses, every error one line with exit code 2.

Before the dataclasses fill in their defaults, the flags as given are checked for saying one thing twice:
an old name of the authors' README beside its new name (``--per_gpu_train_batch_size`` and
``--per_device_train_batch_size``), two ways of setting the warmup, an interval for a schedule that is
off (``--eval_steps`` with ``--eval_strategy no``). Given both, one would win without a word.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from transformers import HfArgumentParser

from camtl.errors import UsageError
from camtl.training.arguments import CaMtlTrainingArguments, DataArguments, ModelArguments
from camtl.training.config_file import config_file_to_flags
from camtl.training.flag_checks import shown_value

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


class ArgumentParser(HfArgumentParser):
    """HfArgumentParser whose errors are one line and exit code 2, like every other bad input."""

    def error(self, message: str):
        raise UsageError(f"{message} (see python run.py --help)")


def parse_arguments(argv: list[str]) -> tuple[ModelArguments, DataArguments, CaMtlTrainingArguments]:
    """run.py's flags (or one JSON config file) as its three argument dataclasses, checked."""
    if argv and argv[0].endswith(".json") and len(argv) > 1:
        raise UsageError(
            f"a config file takes no other flags: move {argv[1]} into {argv[0]} or pass every flag"
            " on the command line"
        )
    parser = ArgumentParser((ModelArguments, DataArguments, CaMtlTrainingArguments))
    if argv and argv[0].endswith(".json"):
        argv = config_file_to_flags(Path(argv[0]), parser)
    check_flag_conflicts(parser, argv)
    try:
        *parsed, unknown = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    except ValueError as error:  # TrainingArguments' own checks
        raise UsageError(str(error).splitlines()[0]) from None
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return tuple(parsed)


def _given(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[set[str], argparse.Namespace]:
    """The flags named in ``argv`` and every flag's parsed value (the default where not given)."""
    values, _ = parser.parse_known_args(argv)
    named = {word[2:].split("=", 1)[0] for word in argv if word.startswith("--")}
    return {name for name in named if hasattr(values, name)}, values


def check_flag_conflicts(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Refuse two given flags that set one thing differently, and an interval whose schedule is off."""
    given, values = _given(parser, argv)
    for old, new in _SAME_SETTING.items():
        if {old, new} <= given and getattr(values, old) != getattr(values, new):
            raise UsageError(
                f"--{old} {shown_value(getattr(values, old))} and --{new} {shown_value(getattr(values, new))}"
                f" set the same thing (--{old} is the old name of --{new}): keep one"
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
