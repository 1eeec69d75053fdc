"""Checks of the training flags, each with a message that names the flag: the numeric ones, the
``task=weight`` lists (--task_weights, --sampling_weights), and the
Trainer options that camtl does not apply.

transformers checks few of them, and some wrong values do not fail at all: ``--max_grad_norm nan`` turns
clipping off, ``--weight_decay nan`` surfaces as a NaN loss that blames the learning rate, Adam betas
outside [0, 1) fail inside torch after the model is loaded. Everything here runs while parsing.
"""

from __future__ import annotations

import dataclasses
import math

from camtl.errors import UsageError
from camtl.tasks import canonical_task_name

# Trainer options that camtl's own parts replace -> the part that does not read them.
_OWN_LOSS = "camtl's task losses are its own (camtl/model/heads.py)"
_OWN_EVALUATION = "camtl evaluates with its own loop (camtl/training/evaluation.py)"
_OWN_SELECTION = "camtl picks the best evaluation by its average (eval_history.json names it)"
_NOT_READ = {
    "label_smoothing_factor": _OWN_LOSS,
    "label_names": _OWN_LOSS,
    "length_column_name": "camtl's task sampler groups the batches (--train_sampling_strategy)",
    "dataloader_drop_last": "camtl's task sampler makes the training batches",
    "prediction_loss_only": _OWN_EVALUATION,
    "include_for_metrics": _OWN_EVALUATION,
    "batch_eval_metrics": _OWN_EVALUATION,
    "eval_do_concat_batches": _OWN_EVALUATION,
    "eval_accumulation_steps": _OWN_EVALUATION,
    "metric_for_best_model": _OWN_SELECTION,
    "greater_is_better": _OWN_SELECTION,
}


def shown_value(value) -> object:
    """A parsed value as the user wrote it: an enum member (IntervalStrategy.STEPS) as its string, a switch
    as true / false, 5.0 as 5, a list as its words."""
    value = getattr(value, "value", value)
    if isinstance(value, list):
        return " ".join(map(str, value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return int(value) if isinstance(value, float) and value.is_integer() else value


def check_options_camtl_applies(args) -> None:
    """Refuse a Trainer option set away from its default that camtl's own parts never read: it would
    change nothing without a word."""
    defaults = {f.name: f.default for f in dataclasses.fields(args) if f.default is not dataclasses.MISSING}
    defaults |= {
        f.name: f.default_factory()
        for f in dataclasses.fields(args)
        if f.default_factory is not dataclasses.MISSING
    }
    for name, reader in _NOT_READ.items():
        value = getattr(args, name)
        if value != defaults[name]:
            raise UsageError(
                f"--{name} {shown_value(value)} is a Trainer option that camtl does not apply:"
                f" {reader}; drop it"
            )


def _require(args, name: str, ok, expected: str) -> None:
    value = getattr(args, name)
    if not (isinstance(value, (int, float)) and math.isfinite(value) and ok(value)):
        raise UsageError(f"--{name} must be {expected}, got {value}")


def _check_steps(args, name: str) -> None:
    """A logging, saving or evaluation interval: a number of steps, or below 1 a fraction of the run."""
    value = getattr(args, name)
    if value is None:
        return
    _require(args, name, lambda v: v > 0, "positive (a number of steps, or a fraction of the run below 1)")
    if value > 1 and value != int(value):
        raise UsageError(f"--{name} must be a whole number of steps above 1, got {value}")


def check_training_numbers(args) -> None:
    """Every numeric training flag is finite and in its range; call before TrainingArguments' own checks."""
    _require(args, "learning_rate", lambda v: v >= 0, "a finite number >= 0")
    _require(args, "weight_decay", lambda v: v >= 0, "a finite number >= 0")
    _require(args, "max_grad_norm", lambda v: v >= 0, "a finite number >= 0 (0 turns clipping off)")
    for name in ("adam_beta1", "adam_beta2"):
        _require(args, name, lambda v: 0 <= v < 1, "in [0, 1)")
    _require(
        args,
        "head_lr_multiplier",
        lambda v: v > 0,
        "a positive number (1: the heads learn at --learning_rate)",
    )
    _require(args, "adam_epsilon", lambda v: v > 0, "a finite number > 0, such as 1e-8")
    _require(args, "warmup_steps", lambda v: v >= 0, "a number of steps >= 0 (or a fraction below 1)")
    _require(args, "num_train_epochs", lambda v: v >= 0, "a finite number of epochs")
    _require(args, "eval_delay", lambda v: v >= 0, "a finite number >= 0")
    if args.max_steps == 0 or args.max_steps < -1:  # the Trainer trains 1 step for 0
        raise UsageError(
            f"--max_steps must be positive (or -1 to train --num_train_epochs), got {args.max_steps}"
        )
    for name in ("logging_steps", "save_steps", "eval_steps"):
        _check_steps(args, name)
    if args.save_total_limit is not None and args.save_total_limit <= 0:
        raise UsageError(
            "--save_total_limit must be positive (or left out to keep every checkpoint),"
            f" got {args.save_total_limit}"
        )
    if args.dataloader_num_workers < 0:
        raise UsageError(f"--dataloader_num_workers must be 0 or more, got {args.dataloader_num_workers}")
    if args.load_best_model_at_end:
        raise UsageError(
            "--load_best_model_at_end is not supported: camtl picks the best evaluation by GLUE average"
            " (eval_history.json names its checkpoint); drop the flag"
        )


def task_weight_map(specs: list[str], flag: str, positive: bool = False) -> dict[str, float]:
    """``task=weight ...`` of ``flag``, read and checked: known tasks, each once, finite weights >= 0
    (``positive``: > 0). Checked before the model loads: an infinite loss weight would surface as a
    diverged loss mid-run."""
    weights = {}
    for spec in specs:
        task, _, weight = spec.partition("=")
        try:
            value = float(weight)
            task = canonical_task_name(task.strip())
        except ValueError:
            raise UsageError(f"{flag} {spec!r} cannot be read: write task=weight, e.g. sst-2=0.5") from None
        except UsageError as error:
            raise UsageError(f"{flag} {spec!r}: {error}") from None
        if not (math.isfinite(value) and (value > 0 if positive else value >= 0)):
            bound = "> 0" if positive else ">= 0"
            raise UsageError(f"{flag} {spec!r}: a weight must be a finite number {bound}, e.g. sst-2=0.5")
        if task in weights:
            raise UsageError(f"{flag} names {task} twice: give each task one weight")
        weights[task] = value
    return weights
