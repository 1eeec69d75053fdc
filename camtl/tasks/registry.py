"""The task table: every known task by name, its aliases, and the lookups the rest of camtl uses.

Built-in tasks (GLUE and the data of ``../shared/data``) are registered at import; task files and
checkpoints register the tasks they define (``register``).
"""

from __future__ import annotations

from camtl.errors import UsageError
from camtl.tasks.builtin import BUILTIN_TASKS
from camtl.tasks.glue import GLUE_ALIASES, GLUE_TASKS, TRAINABLE_TASKS
from camtl.tasks.spec import Task

TASKS: dict[str, Task] = {task.name: task for task in (*GLUE_TASKS, *BUILTIN_TASKS)}
_BUILTIN = frozenset(TASKS)
_ALIASES: dict[str, str] = dict(GLUE_ALIASES) | {alias: t.name for t in BUILTIN_TASKS for alias in t.aliases}

# The keys eval_results.json keeps for its own summary beside the tasks' scores (camtl.training.metrics):
# a task of that name would have its scores overwritten there, so no task may take one.
SUMMARY_KEYS = ("glue_average", "glue_average_with_wnli", "average")

# The primary metric of each GLUE task as the leaderboard scores it.
PRIMARY_METRIC: dict[str, str] = {
    task.name: task.primary_metric for task in GLUE_TASKS if task.primary_metric
}


def register(task: Task) -> None:
    """Add a task defined by a task file or a checkpoint; a different task of the same name is an error."""
    known = TASKS.get(task.name)
    if known is not None and known != task:
        source = "a built-in task" if task.name in _BUILTIN else "a task"
        raise UsageError(f"task '{task.name}' is already {source} with another definition: rename yours")
    TASKS[task.name] = task


def register_saved(task: Task, task_file: str | None = None) -> None:
    """A task from a checkpoint: registered when unknown; a known one must still have its type and labels.

    ``task_file``: the --task_file whose tasks were registered just before, named when one of them is the
    task that differs (the checkpoint's own definition is what its head was trained on)."""
    known = TASKS.get(task.name)
    if known is None:
        register(task)
        return
    if (known.type, known.labels) == (task.type, task.labels):
        return
    saved = f"the checkpoint's task '{task.name}' ({task.type}, labels {list(task.labels)})"
    if task.name in _BUILTIN or task_file is None:
        raise UsageError(
            f"{saved} is not this camtl's ({known.type}, labels {list(known.labels)}): it was trained with"
            " another definition of the task: predict with the camtl that trained it, or train afresh"
        )
    raise UsageError(
        f"{saved} differs from task '{task.name}' of --task_file {task_file} ({known.type}, labels"
        f" {list(known.labels)}): drop --task_file (the checkpoint carries its tasks), or restore the"
        " labels the checkpoint was trained with"
    )


def known_name(name: str) -> str | None:
    """The registry key of a known task's name or alias, or None."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    return key if key in TASKS else None


def builtin_name(name: str) -> str | None:
    """The key of the built-in task a name or alias stands for, or None: task files may not take these."""
    key = known_name(name)
    return key if key in _BUILTIN else None


def canonical_task_name(name: str) -> str:
    """Map user spellings (``SST-2``, ``sst2``, ``STS-B``, ``MNLI-m``...) to the registry key."""
    key = known_name(name)
    if key is None:
        known = ", ".join(TASKS)
        raise UsageError(
            f"unknown task '{name}': choose from {known} (aliases such as sst2, stsb, mnli-m work)"
        )
    return key


def is_transfer(task: Task) -> bool:
    """An evaluation-only task predicted by another task's head (snli by mnli's): evaluated only on request.

    GLUE's own companions (mnli-mm, ax) are always evaluated with their head's task."""
    return task.head != task.name and not task.glue


def resolve_tasks(names: list[str] | None) -> list[str]:
    """The training tasks named (canonical, de-duplicated, in registry order); ``None`` or ``all`` means GLUE.

    Transfer tasks in ``names`` are not trained (``transfer_tasks`` picks them); GLUE's companions
    (mnli-mm, ax) are an error naming their head."""
    if not names or [n.lower() for n in names] == ["all"]:
        return list(TRAINABLE_TASKS)
    resolved = []
    for task in _named(names):
        spec = TASKS[task]
        if spec.head != task and not is_transfer(spec):
            raise UsageError(
                f"task '{task}' has no head of its own (the {spec.head} head predicts it): use '{spec.head}'"
            )
        if spec.head == task and task not in resolved:
            resolved.append(task)
    if not resolved:
        raise UsageError(
            "--tasks names no task to train: list some, e.g. --tasks rte mrpc, or leave it out for all"
        )
    order = list(TASKS)
    return sorted(resolved, key=order.index)


def transfer_tasks(names: list[str] | None, trained: list[str]) -> list[str]:
    """The transfer tasks named in ``names``; each needs its head's task among ``trained``."""
    transfers = [task for task in _named(names or []) if is_transfer(TASKS[task])]
    for task in transfers:
        head = TASKS[task].head
        if head not in trained:
            raise UsageError(f"task '{task}' is predicted by the {head} head: add {head} to --tasks")
    return list(dict.fromkeys(transfers))


def _named(names: list[str]) -> list[str]:
    return [canonical_task_name(part) for name in names for part in name.split(",") if part.strip()]


def evaluation_tasks(trained: list[str], transfers: list[str] = ()) -> list[str]:
    """Tasks with a dev split that the trained heads score (mnli adds mnli-mm), and the transfers asked."""
    return [
        name
        for name, task in TASKS.items()
        if task.dev is not None and task.head in trained and (not is_transfer(task) or name in transfers)
    ]


def prediction_tasks(trained: list[str], transfers: list[str] = ()) -> list[str]:
    """Tasks with a test split that the trained heads predict (mnli adds mnli-mm, ax), and the transfers."""
    return [
        name
        for name, task in TASKS.items()
        if task.test is not None and task.head in trained and (not is_transfer(task) or name in transfers)
    ]
