"""Checks across the tasks of one task file: what a declared task may be called, and whose head it may read.

A name may not take a built-in task's name or alias (the built-in would win every lookup) nor a key that
eval_results.json keeps for its own summary. A ``head`` names a declared or built-in task that has a head
of its own (no chain, no cycle), of the same type and labels: the task is evaluated and predicted through
that head, its classes mapped by name (token-classification tags by position).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from camtl.errors import UsageError
from camtl.tasks.registry import SUMMARY_KEYS, TASKS, builtin_name
from camtl.tasks.spec import Task


def checked_names_and_heads(tasks: list[Task], path: Path) -> list[Task]:
    """The tasks of the task file ``path``, each head named by its registry key, once every name and head
    passes; otherwise a UsageError naming the file, the task and the key."""
    declared = {task.name: task for task in tasks}
    for task in tasks:
        _check_name(task, declared, f"{path}: task '{task.name}'")
    return [_with_checked_head(task, declared, path) for task in tasks]


def _check_name(task: Task, declared: dict[str, Task], where: str) -> None:
    """A declared name may not be a built-in task's name or alias (the built-in would win the lookup), nor
    a key that eval_results.json keeps for its averages; a head names a declared or a known task."""
    built_in = builtin_name(task.name)
    if built_in is not None and TASKS[built_in] != task:
        alias = "" if built_in == task.name else f" (an alias of {built_in})"
        raise UsageError(f"{where}: '{task.name}' is already a built-in task{alias}: rename yours")
    if task.name in SUMMARY_KEYS:
        raise UsageError(
            f"{where}: key 'name' is '{task.name}', which eval_results.json keeps for an average of the"
            " scores: rename yours"
        )
    if _head_task(task.head, declared) is None:
        raise UsageError(
            f"{where}: key 'head' is '{task.head}', no such task: name a declared or built-in task"
        )


def _head_task(name: str, declared: dict[str, Task]) -> Task | None:
    if name in declared:
        return declared[name]
    built_in = builtin_name(name)
    return TASKS[built_in] if built_in is not None else None


def _with_checked_head(task: Task, declared: dict[str, Task], path: Path) -> Task:
    """The task, its head named by its registry key once the head is known to be usable: a task with a
    head of its own (not a chain or a cycle of shared heads), of this task's type and labels."""
    if task.head == task.name:
        return task
    where = f"{path}: task '{task.name}'"
    chain, head = [task.name], _head_task(task.head, declared)
    while head.head != head.name and head.name not in chain:
        chain.append(head.name)
        head = _head_task(head.head, declared)
    if head.name in chain:
        cycle = chain[chain.index(head.name) :]
        listed = " and ".join(", ".join(f"'{name}'" for name in cycle).rsplit(", ", 1))
        raise UsageError(
            f"{path}: tasks {listed} name each other under key 'head', a cycle in which no task has a head"
            " of its own: drop head from one of them"
        )
    if len(chain) > 1:
        raise UsageError(
            f"{where}: key 'head' is '{task.head}', which reads the head of '{head.name}' itself:"
            f" write head: {head.name}"
        )
    mismatch = _head_mismatch(task, head)
    if mismatch:
        raise UsageError(f"{where}: key 'head' is '{head.name}', {mismatch}")
    return dataclasses.replace(task, head=head.name)


def _head_mismatch(task: Task, head: Task) -> str | None:
    """Why ``task`` cannot read the predictions of ``head``'s output head (classes are mapped by name, tags
    are read by position), with the fix; None when it can."""
    own = f"or drop head to give '{task.name}' a head of its own"
    if head.type != task.type:
        return (
            f"a {head.type} task, whose head cannot score a {task.type} task: name a {task.type} task, {own}"
        )
    if sorted(head.labels) != sorted(task.labels):
        return (
            f"whose labels are {list(head.labels)}, not this task's {list(task.labels)}:"
            f" give both the same labels, {own}"
        )
    if task.type == "token_classification" and head.labels != task.labels:
        return f"whose tags are in another order ({list(head.labels)}): list them in that order, {own}"
    return None
