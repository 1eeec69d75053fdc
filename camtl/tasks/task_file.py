"""Task files: your own tasks in YAML or JSON, without touching camtl's code (``--task_file tasks.yaml``).

```yaml
data_dir: ../data            # optional: where the files below are, relative to this file (default: here)
tasks:
  - name: my-nli
    type: classification     # classification, regression, multiple_choice, token_classification, masked_lm
    files: {train: nli/train.jsonl, dev: nli/dev.jsonl, test: nli/test.jsonl}   # any of the three
    format: jsonl            # optional: from the extension (.jsonl .csv .tsv .conll .txt), a folder is a
                             # saved Hugging Face dataset
    fields: {text_a: premise, text_b: hypothesis, label: label, id: idx}   # keys, dotted paths or {templates}
    labels: [entailment, neutral, contradiction]
    metric: accuracy         # or metrics: [accuracy, macro_f1]; the first is the task's score
    loss_weight: 1.0         # optional
    head: other-task         # optional: share the output head of another task
```

Fields per type: ``text_a`` (and ``text_b``) for classification and regression (with ``label_range``);
``text_a`` (the context) and ``choices`` (a list field, or a list of fields) for multiple choice, whose
``labels`` name the choices; ``tokens`` and ``tags`` for token classification (``labels``: the tag set;
conll files need no fields); ``text`` for masked LM (plain text files need none).

The format is one schema (``TaskFile`` below, pydantic): every key's type is checked there, then what
depends on the task type; a bad file is one line naming the task, the key and the fix, before any model
is built. ``python -m camtl.tasks.task_file`` prints the format reference generated from the schema.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from camtl.errors import UsageError
from camtl.tasks.declared import checked_names_and_heads
from camtl.tasks.spec import (
    BINARY_METRICS,
    DEFAULT_METRIC,
    FIELDS_READ,
    METRICS,
    TASK_TYPES,
    SplitFormat,
    Task,
)
from camtl.tasks.structured_files import read_structured_file

EXTENSIONS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv", ".conll": "conll",
              ".txt": "text", ".tokens": "text", ".raw": "text"}  # fmt: skip
FILE_FORMATS = ("jsonl", "csv", "tsv", "conll", "text", "dataset")
# A task's name becomes part of file names (the feature cache, predictions/<task>.jsonl): no separators,
# and short enough that the longest of them stays under the file systems' 255 bytes.
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
# Where a message sends the reader for the format (run.py --help does not describe task files).
REFERENCE = "python -m camtl.tasks.task_file prints the format, docs/task-files.md explains it"
Text = Annotated[StrictStr, Field(min_length=1)]
Label = StrictStr | StrictInt  # YAML reads 0 and 1 as numbers: they stand for "0" and "1"


def _refused(message: str) -> PydanticCustomError:
    """A schema check that words its own line (``_problem`` puts the file and the task before it)."""
    return PydanticCustomError("camtl", message)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Files(_Strict):
    """Where each split is: a file, or a folder holding a saved Hugging Face dataset."""

    train: Text | None = Field(None, description="the training split")
    dev: Text | None = Field(None, description="the development split (--do_eval)")
    test: Text | None = Field(None, description="the test split (--do_predict)")


class Fields(_Strict):
    """Which field of a row holds what: a key, a dotted path (``a.b``) or a template (``{a}: {b}``)."""

    text_a: Text | None = Field(None, description="the text; the context for multiple choice")
    text_b: Text | None = Field(None, description="the second text of a pair")
    label: Text | None = Field(None, description="the label (default: label)")
    id: Text | None = Field(None, description="the ID written to prediction files")
    choices: Text | list[Text] | None = Field(None, description="multiple choice: a list field, or fields")
    tokens: Text | None = Field(None, description="token classification: the words (default: tokens)")
    tags: Text | None = Field(None, description="token classification: their tags (default: tags)")
    text: Text | None = Field(None, description="masked LM: the text (default: text)")


class TaskEntry(_Strict):
    """One declared task."""

    name: Text = Field(
        description="its name: up to 64 ASCII letters, digits, '-', '_' and '.'; not a built-in name"
    )
    type: Literal[TASK_TYPES] = Field(description="the task type")
    files: Files = Field(description="train, dev and/or test")
    format: Literal[FILE_FORMATS] | None = Field(None, description="default: from the file's extension")
    fields: Fields = Field(Fields(), description="which field holds what")
    labels: list[Label] | None = Field(None, description="the label set (the tag set, the choices' names)")
    label_names: list[Label] | None = Field(None, description="the names raw labels 0, 1, ... stand for")
    label_range: Annotated[list[float], Field(min_length=2, max_length=2)] | None = Field(
        None, description="regression: [low, high]"
    )
    metric: Text | None = Field(None, description="the task's score")
    metrics: Text | Annotated[list[Text], Field(min_length=1)] | None = Field(
        None, description="several metrics instead of metric, the first is the score"
    )
    loss_weight: float = Field(1.0, ge=0, allow_inf_nan=False, description="a number >= 0")
    head: Text | None = Field(
        None, description="evaluate and predict with the head of another task (same type and labels)"
    )

    @field_validator("name", "head")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and not NAME.match(value.strip().lower()):
            raise ValueError("names go into file names")
        return value

    @field_validator("fields")
    @classmethod
    def _fields_of_the_type(cls, value: Fields, info: ValidationInfo) -> Fields:
        kind = info.data.get("type")  # absent when the type itself is bad: that error comes first
        read = FIELDS_READ.get(kind, Fields.model_fields)
        unread = [key for key in value.model_dump(exclude_none=True) if key not in read]
        if unread:
            raise _refused(
                f"key 'fields.{unread[0]}' does not apply to {kind}: drop it ({kind} reads"
                f" {', '.join(FIELDS_READ[kind])})"
            )
        return value

    @field_validator("metrics")
    @classmethod
    def _metric_or_metrics(cls, value: object, info: ValidationInfo) -> object:
        if value is not None and info.data.get("metric") is not None:
            raise _refused(
                "keys 'metric' and 'metrics' are both given: keep one (the first of metrics is the score)"
            )
        return value


class TaskFile(_Strict):
    """A task file: your tasks, and where their files are."""

    data_dir: Text = Field(".", description="where the files are, relative to the task file")
    tasks: list[TaskEntry] = Field(min_length=1, description="the tasks")


# The fix each key's line names when its value has the wrong type or shape.
FIXES = {
    "name": "give a name of letters, digits, '-', '_' and '.' (ASCII, 64 at most: it goes into file names)",
    "head": "name another task (ASCII letters, digits, '-', '_' and '.')",
    "type": f"choose from {', '.join(TASK_TYPES)}",
    "files": "map train, dev and/or test to files",
    "format": f"choose from {', '.join(FILE_FORMATS)}",
    "fields": f"map some of {', '.join(Fields.model_fields)} to fields",
    "labels": "list at least two distinct labels (quote yes, no, true, false: YAML reads them as booleans)",
    "label_names": "list the names as text (quote yes, no, true, false: YAML reads them as booleans)",
    "label_range": "give [low, high] for regression",
    "metric": "name one metric",
    "metrics": "list one metric name or more",
    "loss_weight": "give a number >= 0",
    "data_dir": "give a folder as text",
    "tasks": "list the tasks under 'tasks'",
}


def _read(path: Path):
    if path.is_dir():
        raise UsageError(f"--task_file {path} is a directory: pass the YAML or JSON task file in it")
    if not path.is_file():
        raise UsageError(f"--task_file {path} does not exist: pass a YAML or JSON task file")
    return read_structured_file(path)


def _problem(path: Path, content: dict, error: ValidationError) -> UsageError:
    """The first schema error as one line: where (the task, by name when it has one), the key, the fix."""
    first = error.errors()[0]
    loc, where, model, scope = list(first["loc"]), f"{path}:", TaskFile, content
    if loc[:1] == ["tasks"] and len(loc) > 1 and isinstance(loc[1], int):
        entry = content["tasks"][loc[1]]
        name = entry.get("name") if isinstance(entry, dict) else None
        named = isinstance(name, str) and name.strip()
        where = f"{path}: task '{name}':" if named else f"{path}: task {loc[1] + 1}:"
        loc, model, scope = loc[2:], TaskEntry, entry
        if not isinstance(entry, dict):
            return UsageError(f"{where[:-1]} is not a mapping of keys: write name, type, files, fields, ...")
    if first["type"] == "camtl":  # a check that words its own line
        return UsageError(f"{where} {first['msg']}")
    keys = []  # the keys of the path; pydantic adds the names of union members, which are skipped
    for part in loc:
        if model is not None and part in model.model_fields:
            keys.append(part)
            model = NESTED.get(part)
        elif first["type"] == "extra_forbidden" and part == loc[-1]:
            keys.append(str(part))
    key = ".".join(keys) or "tasks"
    if first["type"] == "extra_forbidden":
        known = sorted((NESTED.get(keys[-2]) if len(keys) > 1 else None or TaskEntry).model_fields)
        return UsageError(f"{where} unknown key '{key}': use {', '.join(known)}")
    fix = FIXES.get(keys[0] if keys else "tasks", f"follow the format ({REFERENCE})")
    if first["type"] == "missing" or (keys == ["name"] and not str(first.get("input", "")).strip()):
        return UsageError(f"{where} key '{key}' is missing: {fix}")
    value = scope
    for part in keys:  # the whole value of the key (pydantic's input may be one item of a list)
        value = value.get(part) if isinstance(value, dict) else first["input"]
    return UsageError(f"{where} key '{key}' is {value!r}: {fix}")


NESTED = {"files": Files, "fields": Fields, "tasks": TaskEntry}


def load_task_file(path: str | Path) -> list[Task]:
    """The tasks a task file declares, checked against the schema, then key by key for their type."""
    path = Path(path)
    content = _read(path)
    if content is None:  # an empty file, or YAML of comments only
        raise UsageError(f"{path} is empty: declare your tasks under 'tasks' ({REFERENCE})")
    if not isinstance(content, dict) or not isinstance(content.get("tasks"), list) or not content["tasks"]:
        raise UsageError(f"{path}: expected a mapping with a non-empty list under 'tasks' ({REFERENCE})")
    try:
        parsed = TaskFile.model_validate(content)
    except ValidationError as error:
        raise _problem(path, content, error) from None
    base = (path.parent / Path(parsed.data_dir).expanduser()).resolve()
    tasks = [_task(entry, base, f"{path}: task '{entry.name}'") for entry in parsed.tasks]
    names = [task.name for task in tasks]
    duplicate = next((name for name in names if names.count(name) > 1), None)
    if duplicate:
        raise UsageError(f"{path}: task '{duplicate}' is declared twice: give each task its own name")
    return checked_names_and_heads(tasks, path)


def _task(entry: TaskEntry, base: Path, where: str) -> Task:
    kind = entry.type
    labels = _labels(entry, kind, where)
    metrics = _metrics(entry, kind, labels, where)
    label_range = entry.label_range
    if kind == "regression" and not (label_range and label_range[0] < label_range[1]):
        raise UsageError(f"{where}: key 'label_range' is {label_range!r}: give [low, high] for regression")
    if kind != "regression" and label_range is not None:
        raise UsageError(f"{where}: key 'label_range' does not apply to {kind}: drop it")
    name = entry.name.strip().lower()
    return Task(
        name=name,
        folder="",
        labels=labels,
        metrics=metrics,
        primary_metric=metrics[0],
        head=(entry.head or name).strip().lower(),
        type=kind,
        label_range=tuple(label_range) if label_range else None,
        loss_weight=entry.loss_weight,
        label_names=_label_names(entry, labels, where),
        **_splits(entry, kind, base, where),
    )


def _labels(entry: TaskEntry, kind: str, where: str) -> tuple[str, ...]:
    labels = entry.labels
    if kind in ("regression", "masked_lm"):
        if labels:
            raise UsageError(f"{where}: key 'labels' does not apply to {kind}: drop it")
        return ()
    texts = [str(label) for label in labels or ()]
    twice = next((label for label in texts if texts.count(label) > 1), None)
    if twice is not None:  # YAML's 0 and '0' are the same label too
        raise UsageError(f"{where}: key 'labels' lists {twice!r} twice: list each label once")
    if len(texts) < 2:
        raise UsageError(f"{where}: key 'labels' is {labels!r}: list at least two distinct labels")
    return tuple(texts)


def _label_names(entry: TaskEntry, labels: tuple[str, ...], where: str) -> tuple[str, ...] | None:
    """``label_names[i]`` is the label a raw value ``i`` in the files stands for: an order of the labels."""
    if entry.label_names is None:
        return None
    if entry.type not in ("classification", "multiple_choice"):  # only their labels may be raw numbers
        raise UsageError(f"{where}: key 'label_names' does not apply to {entry.type}: drop it")
    names = [str(name) for name in entry.label_names]
    fix = f"list each of {list(labels)} once, in the order of the raw values 0, 1, ..."
    if len(names) != len(labels):
        raise UsageError(f"{where}: key 'label_names' has {len(names)} names for {len(labels)} labels: {fix}")
    unknown = next((name for name in names if name not in labels), None)
    if unknown is not None:
        raise UsageError(f"{where}: key 'label_names' has {unknown!r}, which is not in labels: {fix}")
    twice = next((name for name in names if names.count(name) > 1), None)
    if twice is not None:
        raise UsageError(f"{where}: key 'label_names' lists {twice!r} twice: {fix}")
    return tuple(names)


def _metrics(entry: TaskEntry, kind: str, labels: tuple[str, ...], where: str) -> tuple[str, ...]:
    metrics = entry.metrics or ([entry.metric] if entry.metric else [DEFAULT_METRIC[kind]])
    if isinstance(metrics, str):
        metrics = [metrics]
    for metric in metrics:
        if metric not in METRICS[kind]:
            raise UsageError(
                f"{where}: metric {metric!r} does not apply to {kind}: choose from {', '.join(METRICS[kind])}"
            )
        if metric in BINARY_METRICS and len(labels) > 2:
            raise UsageError(
                f"{where}: metric {metric!r} is binary (the F1 of the second label) and this task has"
                f" {len(labels)} labels: use macro_f1"
            )
    return tuple(metrics)


def _splits(entry: TaskEntry, kind: str, base: Path, where: str) -> dict[str, SplitFormat | None]:
    declared = entry.files.model_dump(exclude_none=True)
    if not declared:
        raise UsageError(f"{where}: key 'files' is {{}}: map train, dev and/or test to files")
    fields = entry.fields.model_dump(exclude_none=True)
    splits = {}
    for split in ("train", "dev", "test"):
        if split not in declared:
            splits[split] = None
            continue
        file = (base / Path(declared[split]).expanduser()).resolve()
        fmt = entry.format or ("dataset" if file.is_dir() else EXTENSIONS.get(file.suffix))
        if fmt is None:
            raise UsageError(
                f"{where}: the format of {file.name} is unknown: add format: {', '.join(FILE_FORMATS)}"
            )
        splits[split] = _split_format(str(file), fmt, kind, fields, split, where)
    return splits


def _split_format(file: str, fmt: str, kind: str, fields: dict, split: str, where: str) -> SplitFormat:
    if kind == "token_classification":
        text, label = fields.get("tokens", "tokens"), fields.get("tags", "tags")
    elif kind == "masked_lm":
        text, label = fields.get("text", "text"), None
    else:
        text, label = fields.get("text_a"), fields.get("label", "label")
        if text is None:
            raise UsageError(f"{where}: fields has no 'text_a': name the field that holds the text")
    choices = fields.get("choices")
    if kind == "multiple_choice" and not choices:
        raise UsageError(
            f"{where}: fields has no 'choices': name the list field, or list one field per choice"
        )
    return SplitFormat(
        file,
        text_a=text,
        text_b=fields.get("text_b"),
        label=label if split != "test" or kind != "masked_lm" else None,
        index=fields.get("id"),
        format=fmt,
        choices=tuple(choices) if isinstance(choices, list) else choices,
    )


def _type_name(schema: dict) -> str:
    if "anyOf" in schema:
        return " or ".join(_type_name(part) for part in schema["anyOf"])
    if "enum" in schema:
        return " / ".join(map(str, schema["enum"]))
    if schema.get("type") == "array":
        items = schema.get("items") or schema.get("prefixItems", [{}])[0]
        return f"list of {_type_name(items)}"
    return schema.get("type", schema.get("$ref", "").rsplit("/", 1)[-1].lower() or "any")


def format_reference() -> str:
    """The task-file format, key by key, generated from the schema (the docs' reference is this text)."""
    lines = ["| key | type | meaning |", "| --- | --- | --- |"]
    for prefix, model in (("", TaskFile), ("tasks[].", TaskEntry), ("files.", Files), ("fields.", Fields)):
        properties = model.model_json_schema()["properties"]
        for key, info in model.model_fields.items():
            lines.append(f"| `{prefix}{key}` | {_type_name(properties[key])} | {info.description or ''} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(format_reference() + "\n")
