"""The settings that define a run, recorded in every checkpoint and compared when a run resumes.

``SETTINGS`` is the one table: each recorded setting is *defining* (a resume that changes it would
train something else, so it is refused), *harmless* (logging, saving, evaluation cadence: allowed,
with a notice) or only *recorded* (the machine: not compared). Every field of ModelArguments and
DataArguments is recorded and is defining unless the table says otherwise, so options added later are
covered without touching this file. Of transformers'
TrainingArguments only the fields in the table are recorded; the others describe the launch (devices,
integrations, hub uploads) rather than what is trained.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from transformers import TrainerCallback

from camtl.data.sources import task_data_dir
from camtl.data.splits import split_path
from camtl.errors import UsageError
from camtl.tasks import TASKS

logger = logging.getLogger(__name__)

DEFINING, HARMLESS, RECORDED = "defining", "harmless", "recorded"
SETTINGS_FILE = "run_settings.json"

SETTINGS: dict[str, str] = {
    # ModelArguments / DataArguments: not listed means defining.
    "data_dir": HARMLESS,  # the path may move; the training files' sizes below are defining
    "overwrite_cache": HARMLESS,
    "features_cache_dir": HARMLESS,
    "max_eval_samples": HARMLESS,  # changes only what later evaluations score (the notice says so)
    "max_predict_samples": HARMLESS,
    # Derived: the training file of each task (its size in bytes), and the number of processes.
    "train_files": DEFINING,
    "world_size": DEFINING,
    # TrainingArguments: what is trained.
    "seed": DEFINING,
    "data_seed": DEFINING,
    "per_device_train_batch_size": DEFINING,
    "gradient_accumulation_steps": DEFINING,
    "learning_rate": DEFINING,
    "lr_scheduler_type": DEFINING,
    "lr_scheduler_kwargs": DEFINING,
    "warmup_steps": DEFINING,  # --warmup_proportion lands here
    "num_train_epochs": DEFINING,
    "max_steps": DEFINING,
    "optim": DEFINING,
    "optim_args": DEFINING,
    "weight_decay": DEFINING,
    "adam_beta1": DEFINING,
    "adam_beta2": DEFINING,
    "adam_epsilon": DEFINING,
    "max_grad_norm": DEFINING,
    "label_smoothing_factor": DEFINING,
    "bf16": DEFINING,  # other rounding: the rest of the run would not be the run it continues
    "fp16": DEFINING,
    "precision": DEFINING,  # what --precision auto chose: on another machine it may choose otherwise
    "precision_choice": RECORDED,  # the CPU or GPU, its bf16 and the measurement behind the choice
    "train_sampling_strategy": DEFINING,
    # TrainingArguments: how the run is watched and saved.
    "logging_strategy": HARMLESS,
    "logging_steps": HARMLESS,
    "logging_first_step": HARMLESS,
    "save_strategy": HARMLESS,
    "save_steps": HARMLESS,
    "save_total_limit": HARMLESS,
    "eval_strategy": HARMLESS,
    "eval_steps": HARMLESS,
    "eval_delay": HARMLESS,
    "per_device_eval_batch_size": HARMLESS,
    "report_to": HARMLESS,
    "dataloader_num_workers": HARMLESS,
}

# Settings that are no flag of their own: how to name them in a message.
DESCRIPTIONS = {
    "train_files": "the training files (bytes per task) in --data_dir",
    "world_size": "the number of processes (torchrun --nproc_per_node)",
}


def _plain(value):
    """A JSON-able, comparable form: enums by value, tuples as lists."""
    value = getattr(value, "value", value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def run_settings(model_args, data_args, args, tasks: list[str], sampler: str) -> dict:
    """The settings of this run, as recorded in its checkpoints. ``tasks`` and ``sampler`` are the resolved
    values, so that ``--use_mt_uncertainty`` and ``--task_sampling mt-uncertainty`` record the same run."""
    settings = {}
    for arguments in (model_args, data_args):
        settings |= {f.name: _plain(getattr(arguments, f.name)) for f in dataclasses.fields(arguments)}
    settings |= {name: _plain(getattr(args, name)) for name in SETTINGS if hasattr(args, name)}
    settings["tasks"] = list(tasks)
    settings["task_sampling"] = sampler
    settings["use_mt_uncertainty"] = sampler == "mt-uncertainty"
    settings["uniform_mt_sampling"] = (
        data_args.uniform_mt_sampling if sampler == "mt-uncertainty" else sampler == "uniform"
    )
    files = {
        task: split_path(task_data_dir(task, data_args.data_dir), task, "train")
        for task in tasks
        if TASKS[task].train is not None
    }
    settings["train_files"] = {task: path.stat().st_size for task, path in files.items() if path.is_file()}
    settings["world_size"] = args.world_size
    if hasattr(args, "precision_choice"):
        settings["precision_choice"] = args.precision_choice.record()
    return settings


def _defaults(model_args, data_args) -> dict:
    """Defaults of the model and data fields: a setting a checkpoint predates had its default value."""
    defaults = {}
    for arguments in (model_args, data_args):
        for f in dataclasses.fields(arguments):
            if f.default is not dataclasses.MISSING:
                defaults[f.name] = _plain(f.default)
    return defaults


def _text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 2.0 steps read as the user wrote them
    if isinstance(value, list):
        return " ".join(map(_text, value))
    return json.dumps(value) if isinstance(value, dict) else str(value)


def _show(name: str, value) -> str:
    if name in DESCRIPTIONS:
        return f"{DESCRIPTIONS[name]} {json.dumps(value)}"
    return f"--{name} {_text(value)}"


def compare_settings(checkpoint: Path, recorded: dict, current: dict, defaults: dict) -> list[str]:
    """Refuse a resume that changes a defining setting (one line naming them all); return the harmless
    changes. Settings the checkpoint predates count as their default."""
    defining, harmless = [], []
    for name, value in current.items():
        before = recorded.get(name, defaults.get(name, value))
        if before == value or SETTINGS.get(name) == RECORDED:
            continue
        change = f"{_show(name, before)} (now {json.dumps(value) if name in DESCRIPTIONS else _text(value)})"
        (harmless if SETTINGS.get(name, DEFINING) == HARMLESS else defining).append(change)
    if defining:
        raise UsageError(
            f"--resume_from_checkpoint {checkpoint} was trained with {', '.join(defining)}: resume with"
            " the checkpoint's settings, or train afresh into another --output_dir"
        )
    return harmless


def check_resume_settings(checkpoint: Path, model_args, data_args, args, current: dict) -> None:
    """Compare this run's settings with the checkpoint's; a harmless change gets a notice."""
    recorded = json.loads((checkpoint / SETTINGS_FILE).read_text())
    changes = compare_settings(checkpoint, recorded, current, _defaults(model_args, data_args))
    if changes:
        logger.warning(
            "resuming %s with changed settings that do not change what is trained: %s",
            checkpoint,
            ", ".join(changes),
        )


class CurrentCadence(TrainerCallback):
    """A resumed Trainer would keep the logging, evaluation and saving steps of the checkpoint's
    trainer_state.json; this run's values (harmless settings) apply instead."""

    def on_train_begin(self, args, state, control, **kwargs):
        state.compute_steps(args, state.max_steps)
