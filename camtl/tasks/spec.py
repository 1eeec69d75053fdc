"""What a task is: its type, where each split lives and which fields hold what, its labels and metrics.

One declarative ``Task`` per task, built in (GLUE, the data of ``../shared/data``) or read from a task file.
A task is serialisable (``to_dict`` / ``from_dict``), so checkpoints carry the definitions of their tasks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

TASK_TYPES = ("classification", "regression", "multiple_choice", "token_classification", "masked_lm")
FORMATS = ("glue", "jsonl", "csv", "tsv", "conll", "text", "dataset")


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
        values = dict(values)
        if isinstance(values.get("choices"), list):
            values["choices"] = tuple(values["choices"])
        return cls(**values)


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
        values = dict(values)
        for split in ("train", "dev", "test"):
            if values.get(split) is not None:
                values[split] = SplitFormat.from_dict(values[split])
        for key in ("labels", "metrics", "label_names", "aliases"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        if values.get("label_range") is not None:
            values["label_range"] = tuple(values["label_range"])
        return cls(**values)
