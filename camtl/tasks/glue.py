"""The GLUE tasks: one declarative row per task, columns as the official files (``download_glue_data.py``).

``mnli-mm`` and ``ax`` have no head of their own: they are predicted by the MNLI head.
"""

from __future__ import annotations

from camtl.tasks.spec import SplitFormat, Task


def _pair(filename: str, a: int, b: int, label: int | None = None, index: int | None = 0) -> SplitFormat:
    return SplitFormat(filename, text_a=a, text_b=b, label=label, index=index)


_NLI_LABELS = ("contradiction", "entailment", "neutral")
_BINARY_ENTAILMENT = ("entailment", "not_entailment")

GLUE_TASKS: tuple[Task, ...] = (
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
        primary_metric="mcc",
        glue=True,
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
        primary_metric="accuracy",
        glue=True,
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
        primary_metric="acc_and_f1",
        glue=True,
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
        primary_metric="corr",
        glue=True,
        type="regression",
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
        primary_metric="acc_and_f1",
        glue=True,
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
        primary_metric="accuracy",
        glue=True,
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
        primary_metric="accuracy",
        glue=True,
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
        primary_metric="accuracy",
        glue=True,
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
        primary_metric="accuracy",
        glue=True,
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
        primary_metric="accuracy",
        glue=True,
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
        primary_metric="",
        glue=True,
    ),
)

# Tasks with a head of their own, in the order the paper lists GLUE; the default for --tasks.
TRAINABLE_TASKS: tuple[str, ...] = ("cola", "sst-2", "mrpc", "sts-b", "qqp", "mnli", "qnli", "rte", "wnli")

GLUE_ALIASES = {
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
