"""What a model directory's config.json says, read before any weights: a camtl checkpoint's fields and its
task definitions checked, so a damaged checkpoint is one line rather than a TypeError at load time."""

from __future__ import annotations

import json
from pathlib import Path

from camtl.errors import UsageError
from camtl.model.presets import resolve
from camtl.tasks import TASKS, Task


def read_model_config(path: Path) -> dict:
    """The config.json of a model directory; a camtl checkpoint's fields checked before anything loads."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise UsageError(
            f"'{path}' is neither a camtl checkpoint nor a model directory (no config.json):"
            " pass a checkpoint directory, a backbone directory or a model name such as CA-MTL-mini"
        )
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UsageError(
            f"'{config_file}' is not valid JSON: the checkpoint is damaged, save it again"
        ) from None
    if not isinstance(config, dict):
        raise UsageError(
            f"'{config_file}' holds a JSON {type(config).__name__}, not an object of config fields:"
            " restore the config.json saved with the model"
        )
    if config.get("model_type") == "camtl":
        _check_checkpoint_fields(config_file, config)
    return config


# A camtl checkpoint's config fields that run.py reads before the model is built -> (type, what it holds).
_CHECKPOINT_FIELDS = {
    "tasks": (list, "a list of task names"),
    "task_specs": (dict, "an object of task definitions"),
    "max_seq_length": (int, "a whole number of tokens"),
    "layout": (str, "a layout name"),
    "backbone": (dict, "the backbone's config object"),
}


def _check_checkpoint_fields(config_file: Path, config: dict) -> None:
    for key, (kind, holds) in _CHECKPOINT_FIELDS.items():
        value = config.get(key)
        well_formed = isinstance(value, kind) and not isinstance(value, bool)
        if kind is list and well_formed:
            well_formed = bool(value) and all(isinstance(item, str) for item in value)
        if value is not None and not well_formed:
            raise UsageError(
                f"'{config_file}': {key!r} must be {holds}, got {json.dumps(value)[:60]}:"
                " the checkpoint is damaged, use another one"
            )
    _check_saved_tasks(config_file, config.get("tasks") or [], config.get("task_specs") or {})


def _check_saved_tasks(config_file: Path, tasks: list[str], specs: dict) -> None:
    """Each task definition is whole, and each task the model was trained on is defined (in task_specs,
    or built in): else registering them, or laying out the heads, fails with a bare TypeError or KeyError."""
    for name, spec in specs.items():
        try:
            task = Task.from_dict(spec)
        except ValueError as error:
            problem = f"is not a task definition ({error})"
        else:
            problem = None if task.name == name else f"defines a task named {task.name!r}"
        if problem:
            raise UsageError(
                f"'{config_file}': task_specs {name!r} {problem}: the checkpoint is damaged, use another one"
            )
    undefined = [name for name in tasks if name not in specs and name not in TASKS]
    if undefined:
        raise UsageError(
            f"'{config_file}': task {undefined[0]!r} of 'tasks' has no definition in 'task_specs':"
            " the checkpoint is damaged, use another one"
        )


def read_saved_config(model_name_or_path: str) -> dict:
    """The config of a camtl checkpoint directory, checked (its tasks and max_seq_length are a run's
    defaults when predicting from it); empty for anything else: loading the model says what else is
    wrong."""
    path = Path(resolve(model_name_or_path)[0]).expanduser()
    if not (path / "config.json").is_file():
        return {}
    config = read_model_config(path)
    return config if config.get("model_type") == "camtl" else {}
