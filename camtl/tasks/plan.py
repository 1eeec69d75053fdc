"""The tasks of one run: what it trains, evaluates and predicts, from --tasks, a task file, a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

from camtl.errors import UsageError
from camtl.tasks.registry import (
    TASKS,
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
    (default: the task file's tasks, those that read another's head evaluated through it; else the
    checkpoint's, or the nine GLUE tasks). Without training, names that are a subset of the checkpoint's
    tasks choose what is evaluated and predicted; the model keeps all of its tasks (its heads are laid out
    by them)."""
    declared = []
    if task_file:
        for task in load_task_file(task_file):
            register(task)
            declared.append(task.name)
    for spec in (saved.get("task_specs") or {}).values():
        register_saved(Task.from_dict(spec), task_file)
    requested = names or _trained_of_task_file(declared, task_file, saved) or None
    trained = resolve_tasks(requested) if requested or not saved.get("tasks") else saved["tasks"]
    transfers = transfer_tasks(names or declared, trained)
    if training:
        _check_trained_files(transfers, declared, task_file)
    model_tasks = saved.get("tasks") or []
    if not training and set(trained) < set(model_tasks):
        return TaskPlan(
            model_tasks, evaluation_tasks(trained, transfers), prediction_tasks(trained, transfers)
        )
    return TaskPlan(trained, evaluation_tasks(trained, transfers), prediction_tasks(trained, transfers))


def _trained_of_task_file(declared: list[str], task_file: str | None, saved: dict) -> list[str]:
    """The task file's tasks that have a head of its own: what a run without --tasks trains (empty when
    every task reads a checkpoint's head)."""
    own = [name for name in declared if TASKS[name].head == name]
    if declared and not own and not saved.get("tasks"):
        heads = sorted({TASKS[name].head for name in declared})
        raise UsageError(
            f"--task_file {task_file}: every task reads the head of another task ({', '.join(heads)}),"
            f" which nothing trains: add it, e.g. --tasks {' '.join(heads + declared)}"
        )
    return own


def _check_trained_files(transfers: list[str], declared: list[str], task_file: str | None) -> None:
    """A task evaluated through another's head trains nothing: a train file of its own would be ignored."""
    for name in transfers:
        task = TASKS[name]
        if name in declared and task.train is not None:
            raise UsageError(
                f"{task_file}: task '{name}' has a train file, but its key 'head' makes it read the head of"
                f" '{task.head}', which trains on the files of '{task.head}' alone: drop files.train of"
                f" '{name}' (its dev and test files are still scored), or drop head to train it with a head"
                " of its own"
            )
