"""Tasks: their definitions (spec.py), the GLUE rows (glue.py), the other built-ins (builtin.py), the
table and its lookups (registry.py) and task files (task_file.py)."""

from camtl.tasks.glue import TRAINABLE_TASKS
from camtl.tasks.registry import (
    PRIMARY_METRIC,
    TASKS,
    canonical_task_name,
    evaluation_tasks,
    prediction_tasks,
    register,
    register_saved,
    resolve_tasks,
    transfer_tasks,
)
from camtl.tasks.spec import TASK_TYPES, SplitFormat, Task

__all__ = [
    "PRIMARY_METRIC",
    "TASKS",
    "TASK_TYPES",
    "TRAINABLE_TASKS",
    "SplitFormat",
    "Task",
    "canonical_task_name",
    "evaluation_tasks",
    "prediction_tasks",
    "register",
    "register_saved",
    "resolve_tasks",
    "transfer_tasks",
]
