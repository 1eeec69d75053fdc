"""The GLUE task registry: one declarative row per task, used by every other module.

Column positions follow the official GLUE files (as written by ``download_glue_data.py``).
``mnli-mm`` and ``ax`` have no head of their own: they are predicted by the MNLI head.
"""

from __future__ import annotations

from dataclasses import dataclass

from camtl.errors import UsageError


@dataclass(frozen=True)
class SplitFormat:
    """Where one split lives and which columns hold what (0-based, by position)."""

    filename: str
    text_a: int
    text_b: int | None = None
    label: int | None = None
    index: int | None = None  # the ID column written to GLUE submission files
    header: bool = True
    num_columns: int | None = None  # for header-less files; otherwise the header decides


@dataclass(frozen=True)
class Task:
    name: str
    folder: str
    train: SplitFormat | None
    dev: SplitFormat | None
    test: SplitFormat | None
    labels: tuple[str, ...]  # empty for regression
    metrics: tuple[str, ...]
    submission_file: str
    head: str  # name of the task whose output head predicts this task
    label_range: tuple[float, float] | None = None  # regression targets only

    @property
    def is_regression(self) -> bool:
        return not self.labels

    @property
    def num_labels(self) -> int:
        return len(self.labels) or 1

    @property
    def output_mode(self) -> str:
        return "regression" if self.is_regression else "classification"

    def split(self, split: str) -> SplitFormat | None:
        return {"train": self.train, "dev": self.dev, "test": self.test}[split]


def _pair(filename: str, a: int, b: int, label: int | None = None, index: int | None = 0) -> SplitFormat:
    return SplitFormat(filename, text_a=a, text_b=b, label=label, index=index)


_NLI_LABELS = ("contradiction", "entailment", "neutral")
_BINARY_ENTAILMENT = ("entailment", "not_entailment")

TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            "cola",
            "CoLA",
            train=SplitFormat("train.tsv", text_a=3, label=1, header=False, num_columns=4),
            dev=SplitFormat("dev.tsv", text_a=3, label=1, header=False, num_columns=4),
            test=SplitFormat("test.tsv", text_a=1, index=0),
            labels=("0", "1"),
            metrics=("mcc", "accuracy"),
            submission_file="CoLA.tsv",
            head="cola",
        ),
        Task(
            "sst-2",
            "SST-2",
            train=SplitFormat("train.tsv", text_a=0, label=1),
            dev=SplitFormat("dev.tsv", text_a=0, label=1),
            test=SplitFormat("test.tsv", text_a=1, index=0),
            labels=("0", "1"),
            metrics=("accuracy",),
            submission_file="SST-2.tsv",
            head="sst-2",
        ),
        Task(
            "mrpc",
            "MRPC",
            train=_pair("train.tsv", 3, 4, label=0, index=None),
            dev=_pair("dev.tsv", 3, 4, label=0, index=None),
            test=_pair("test.tsv", 3, 4),
            labels=("0", "1"),
            metrics=("f1", "accuracy", "acc_and_f1"),
            submission_file="MRPC.tsv",
            head="mrpc",
        ),
        Task(
            "sts-b",
            "STS-B",
            train=_pair("train.tsv", 7, 8, label=9),
            dev=_pair("dev.tsv", 7, 8, label=9),
            test=_pair("test.tsv", 7, 8),
            labels=(),
            metrics=("pearson", "spearman", "corr"),
            submission_file="STS-B.tsv",
            head="sts-b",
            label_range=(0.0, 5.0),
        ),
        Task(
            "qqp",
            "QQP",
            train=_pair("train.tsv", 3, 4, label=5),
            dev=_pair("dev.tsv", 3, 4, label=5),
            test=_pair("test.tsv", 1, 2),
            labels=("0", "1"),
            metrics=("f1", "accuracy", "acc_and_f1"),
            submission_file="QQP.tsv",
            head="qqp",
        ),
        Task(
            "mnli",
            "MNLI",
            train=_pair("train.tsv", 8, 9, label=11),
            dev=_pair("dev_matched.tsv", 8, 9, label=15),
            test=_pair("test_matched.tsv", 8, 9),
            labels=_NLI_LABELS,
            metrics=("accuracy",),
            submission_file="MNLI-m.tsv",
            head="mnli",
        ),
        Task(
            "mnli-mm",
            "MNLI",
            train=None,
            dev=_pair("dev_mismatched.tsv", 8, 9, label=15),
            test=_pair("test_mismatched.tsv", 8, 9),
            labels=_NLI_LABELS,
            metrics=("accuracy",),
            submission_file="MNLI-mm.tsv",
            head="mnli",
        ),
        Task(
            "qnli",
            "QNLI",
            train=_pair("train.tsv", 1, 2, label=3),
            dev=_pair("dev.tsv", 1, 2, label=3),
            test=_pair("test.tsv", 1, 2),
            labels=_BINARY_ENTAILMENT,
            metrics=("accuracy",),
            submission_file="QNLI.tsv",
            head="qnli",
        ),
        Task(
            "rte",
            "RTE",
            train=_pair("train.tsv", 1, 2, label=3),
            dev=_pair("dev.tsv", 1, 2, label=3),
            test=_pair("test.tsv", 1, 2),
            labels=_BINARY_ENTAILMENT,
            metrics=("accuracy",),
            submission_file="RTE.tsv",
            head="rte",
        ),
        Task(
            "wnli",
            "WNLI",
            train=_pair("train.tsv", 1, 2, label=3),
            dev=_pair("dev.tsv", 1, 2, label=3),
            test=_pair("test.tsv", 1, 2),
            labels=("0", "1"),
            metrics=("accuracy",),
            submission_file="WNLI.tsv",
            head="wnli",
        ),
        Task(
            "ax",
            "diagnostic",
            train=None,
            dev=None,
            test=_pair("diagnostic.tsv", 1, 2),
            labels=_NLI_LABELS,
            metrics=(),
            submission_file="AX.tsv",
            head="mnli",
        ),
    )
}

# Tasks with a head of their own, in the order the paper lists GLUE; the default for --tasks.
TRAINABLE_TASKS: tuple[str, ...] = ("cola", "sst-2", "mrpc", "sts-b", "qqp", "mnli", "qnli", "rte", "wnli")

# The primary metric of each task as the GLUE leaderboard scores it.
PRIMARY_METRIC: dict[str, str] = {
    "cola": "mcc",
    "sst-2": "accuracy",
    "mrpc": "acc_and_f1",
    "sts-b": "corr",
    "qqp": "acc_and_f1",
    "mnli": "accuracy",
    "mnli-mm": "accuracy",
    "qnli": "accuracy",
    "rte": "accuracy",
    "wnli": "accuracy",
}

_ALIASES = {
    "sst": "sst-2",
    "sst2": "sst-2",
    "sts": "sts-b",
    "stsb": "sts-b",
    "mnli-m": "mnli",
    "mnli_m": "mnli",
    "mnli_mm": "mnli-mm",
    "mnlimm": "mnli-mm",
    "diagnostic": "ax",
}


def canonical_task_name(name: str) -> str:
    """Map user spellings (``SST-2``, ``sst2``, ``STS-B``, ``MNLI-m``...) to the registry key."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in TASKS:
        known = ", ".join(TASKS)
        raise UsageError(
            f"unknown task '{name}': choose from {known} (aliases such as sst2, stsb, mnli-m work)"
        )
    return key


def resolve_tasks(names: list[str] | None) -> list[str]:
    """Canonical, de-duplicated training tasks in registry order; ``None`` or ``all`` means every task."""
    if not names or [n.lower() for n in names] == ["all"]:
        return list(TRAINABLE_TASKS)
    resolved = []
    for name in names:
        for part in name.split(","):
            if part.strip():
                task = canonical_task_name(part)
                head = TASKS[task].head
                if head != task:
                    raise UsageError(
                        f"task '{part}' has no head of its own (the {head} head predicts it): use '{head}'"
                    )
                if task not in resolved:
                    resolved.append(task)
    if not resolved:
        raise UsageError("--tasks names no task: list some, e.g. --tasks rte mrpc, or leave it out for all")
    return sorted(resolved, key=TRAINABLE_TASKS.index)


def evaluation_tasks(trained: list[str]) -> list[str]:
    """Tasks with a dev split that the trained heads can score (mnli adds mnli-mm)."""
    return [name for name, task in TASKS.items() if task.dev is not None and task.head in trained]


def prediction_tasks(trained: list[str]) -> list[str]:
    """Tasks with a test split that the trained heads can predict (mnli adds mnli-mm and ax)."""
    return [name for name, task in TASKS.items() if task.test is not None and task.head in trained]
