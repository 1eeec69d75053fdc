"""Tasks: their definitions (spec.py), the GLUE rows (glue.py), the other built-ins (builtin.py), the
table and its lookups (registry.py), task files (task_file.py; ``python -m camtl.tasks.task_file``), the
checks across a task file's tasks, their names and shared heads (declared.py), a run's task plan
(plan.py), and the strict reading of the YAML and JSON files a user writes, task files and run.py's
config (structured_files.py).

Imports: camtl.errors only; never camtl.data, camtl.model, camtl.training, camtl.bench or camtl.api
(tests/test_layout.py).
"""

from camtl.tasks.glue import TRAINABLE_TASKS
from camtl.tasks.registry import (
    PRIMARY_METRIC,
    SUMMARY_KEYS,
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
    "SUMMARY_KEYS",
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
