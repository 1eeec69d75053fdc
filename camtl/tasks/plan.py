"""The tasks of one run: what it trains, evaluates and predicts, from --tasks, a task file, a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

from camtl.tasks.registry import (
    evaluation_tasks,
    prediction_tasks,
    register,
    register_saved,
    resolve_tasks,
    transfer_tasks,
)
from camtl.tasks.spec import Task
from camtl.tasks.task_file import load_task_file


@dataclass(frozen=True)
class TaskPlan:
    """The tasks a run trains (the model's), evaluates (their dev splits, companions such as mnli-mm,
    transfer tasks asked for) and predicts."""

    trained: list[str]
    evaluated: list[str]
    predicted: list[str]


def plan_tasks(
    names: list[str] | None, task_file: str | None, saved: dict, training: bool = True
) -> TaskPlan:
    """Register the task file's and the checkpoint's tasks (``saved``: its config), then resolve ``names``
    (default: the task file's tasks, the checkpoint's, or the nine GLUE tasks). Without training, names
    that are a subset of the checkpoint's tasks choose what is evaluated and predicted; the model keeps
    all of its tasks (its heads are laid out by them)."""
    declared = []
    if task_file:
        for task in load_task_file(task_file):
            register(task)
            declared.append(task.name)
    for spec in (saved.get("task_specs") or {}).values():
        register_saved(Task.from_dict(spec))
    requested = names or declared or None
    trained = resolve_tasks(requested) if requested or not saved.get("tasks") else saved["tasks"]
    transfers = transfer_tasks(names, trained)
    model_tasks = saved.get("tasks") or []
    if not training and set(trained) < set(model_tasks):
        return TaskPlan(
            model_tasks, evaluation_tasks(trained, transfers), prediction_tasks(trained, transfers)
        )
    return TaskPlan(trained, evaluation_tasks(trained, transfers), prediction_tasks(trained, transfers))
