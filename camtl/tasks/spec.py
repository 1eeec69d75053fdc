"""What a task is: its type, where each split lives and which fields hold what, its labels and metrics.

One declarative ``Task`` per task, built in (GLUE, the data of ``../shared/data``) or read from a task file.
A task is serialisable (``to_dict`` / ``from_dict``), so checkpoints carry the definitions of their tasks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

TASK_TYPES = ("classification", "regression", "multiple_choice", "token_classification", "masked_lm")
FORMATS = ("glue", "jsonl", "csv", "tsv", "conll", "text", "dataset")
# What each task type can be scored by (camtl.training.metrics), and its score without a choice.
METRICS = {
    "classification": ("accuracy", "f1", "acc_and_f1", "mcc", "macro_f1"),
    "regression": ("pearson", "spearman", "corr"),
    "multiple_choice": ("accuracy",),
    "token_classification": ("entity_f1", "entity_precision", "entity_recall"),
    "masked_lm": ("masked_accuracy", "masked_loss"),
}
DEFAULT_METRIC = {"classification": "accuracy", "regression": "corr", "multiple_choice": "accuracy",
                  "token_classification": "entity_f1", "masked_lm": "masked_accuracy"}  # fmt: skip
# The fields each type reads: another would be silently ignored, so the schema refuses it.
FIELDS_READ = {
    "classification": ("text_a", "text_b", "label", "id"),
    "regression": ("text_a", "text_b", "label", "id"),
    "multiple_choice": ("text_a", "label", "id", "choices"),
    "token_classification": ("tokens", "tags", "id"),
    "masked_lm": ("text",),  # its test text is scored, not predicted: no ids
}
BINARY_METRICS = ("f1", "acc_and_f1")  # F1 of the second label: two labels only


@dataclass(frozen=True)
class SplitFormat:
    """Where one split lives and which fields hold what.

    ``format`` "glue": the official GLUE files, tab-separated without quoting, fields are 0-based column
    positions (``header``, ``num_columns`` for header-less files). Other formats name fields:
    jsonl/csv/tsv/dataset rows by key (a dotted path reaches into nested objects, ``a.b``), or a template
    such as ``"{word}: {sentence1}"`` built from several; conll files hold ``token<TAB>tag`` lines with a
    blank line between sentences; text files hold raw text, one paragraph per line.
    """

    filename: str
    text_a: int | str | None = None  # the text (classification), context (multiple choice), text (masked LM)
    text_b: int | str | None = None  # the second text of a pair
    label: int | str | None = None
    index: int | str | None = None  # the ID written to prediction files
    header: bool = True
    num_columns: int | None = None  # glue: header-less files
    format: str = "glue"
    choices: tuple[str, ...] | str | None = None  # multiple choice: one field per choice, or one list field

    def to_dict(self) -> dict:
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}

    @classmethod
    def from_dict(cls, values: dict) -> SplitFormat:
        """The split ``to_dict`` wrote; a ValueError says what a damaged one lacks or has wrong."""
        values = _fields_of(cls, values)
        if values.get("format", "glue") not in FORMATS:
            raise ValueError(f"format {values['format']!r} is not one of {', '.join(FORMATS)}")
        if isinstance(values.get("choices"), list):
            values["choices"] = tuple(values["choices"])
        return cls(**values)


def _fields_of(cls, values: object) -> dict:
    """``values`` as keyword arguments of the dataclass ``cls``: an object holding every field without a
    default and no other; else a ValueError naming them (a hand-edited or truncated checkpoint)."""
    if not isinstance(values, dict):
        raise ValueError(f"expected an object of fields, got {type(values).__name__}")
    fields = dataclasses.fields(cls)
    unknown = sorted(set(values) - {f.name for f in fields})
    missing = [
        f.name
        for f in fields
        if f.name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ValueError(f"no {', '.join(missing)}")
    if unknown:
        raise ValueError(f"unknown field {', '.join(unknown)}")
    return dict(values)


def _listed(key: str, value: object) -> tuple:
    """A list field as the tuple the dataclass holds (a string would become a tuple of its letters)."""
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{key} must be a list, got {value!r}"[:80])
    return tuple(value)


@dataclass(frozen=True)
class Task:
    name: str
    folder: str  # the task's folder inside a --data_dir
    train: SplitFormat | None
    dev: SplitFormat | None
    test: SplitFormat | None
    labels: tuple[str, ...]  # empty for regression and masked LM; the tag set for token classification
    metrics: tuple[str, ...]
    primary_metric: str  # the task's score
    head: str  # the task whose output head predicts this task (itself, or e.g. mnli for mnli-mm)
    type: str = "classification"
    submission_file: str | None = None  # GLUE leaderboard file; other tasks write predictions/<task>.jsonl
    label_range: tuple[float, float] | None = None  # regression targets only
    loss_weight: float = 1.0
    glue: bool = False  # counted in the GLUE average
    label_names: tuple[str, ...] | None = None  # raw label values 0, 1, ... stand for these label names
    aliases: tuple[str, ...] = field(default=())

    @property
    def is_regression(self) -> bool:
        return self.type == "regression"

    @property
    def num_labels(self) -> int:
        return len(self.labels) or 1

    @property
    def output_mode(self) -> str:
        return "regression" if self.is_regression else "classification"

    def split(self, split: str) -> SplitFormat | None:
        return {"train": self.train, "dev": self.dev, "test": self.test}[split]

    def to_dict(self) -> dict:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for split in ("train", "dev", "test"):
            values[split] = values[split].to_dict() if values[split] is not None else None
        return values

    @classmethod
    def from_dict(cls, values: dict) -> Task:
        """The task ``to_dict`` wrote (a checkpoint's task_specs); a ValueError says what a damaged one
        lacks or has wrong."""
        values = _fields_of(cls, values)
        if values.get("type", "classification") not in TASK_TYPES:
            raise ValueError(f"type {values['type']!r} is not one of {', '.join(TASK_TYPES)}")
        for split in ("train", "dev", "test"):
            if values.get(split) is not None:
                try:
                    values[split] = SplitFormat.from_dict(values[split])
                except ValueError as error:
                    raise ValueError(f"{split}: {error}") from None
        for key in ("labels", "metrics", "label_names", "aliases", "label_range"):
            if values.get(key) is not None:
                values[key] = _listed(key, values[key])
        return cls(**values)
