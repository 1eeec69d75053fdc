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
conll files need no fields); ``text`` for masked LM (plain text files need none). A bad file is one
line naming the task, the key and the fix, before any model is built.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from camtl.errors import UsageError
from camtl.tasks.spec import FORMATS, TASK_TYPES, SplitFormat, Task

METRICS = {
    "classification": ("accuracy", "f1", "acc_and_f1", "mcc", "macro_f1"),
    "regression": ("pearson", "spearman", "corr"),
    "multiple_choice": ("accuracy",),
    "token_classification": ("entity_f1", "entity_precision", "entity_recall"),
    "masked_lm": ("masked_accuracy", "masked_loss"),
}
DEFAULT_METRIC = {"classification": "accuracy", "regression": "corr", "multiple_choice": "accuracy",
                  "token_classification": "entity_f1", "masked_lm": "masked_accuracy"}  # fmt: skip
EXTENSIONS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv", ".conll": "conll",
              ".txt": "text", ".tokens": "text", ".raw": "text"}  # fmt: skip
KEYS = {"name", "type", "files", "format", "fields", "labels", "label_names", "label_range", "metric",
        "metrics", "loss_weight", "head"}  # fmt: skip
FIELDS = {"text_a", "text_b", "label", "id", "choices", "tokens", "tags", "text"}


class _Problem(UsageError):
    pass


def load_task_file(path: str | Path) -> list[Task]:
    """The tasks a task file declares, checked key by key."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--task_file {path} does not exist: pass a YAML or JSON task file")
    try:
        text = path.read_text(encoding="utf-8")
        content = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as error:
        reason = str(error).replace("\n", " ")
        raise UsageError(f"{path} cannot be read ({reason}): fix its syntax") from None
    if not isinstance(content, dict) or not isinstance(content.get("tasks"), list) or not content["tasks"]:
        raise UsageError(
            f"{path}: expected a mapping with a non-empty list under 'tasks' (see python run.py --help)"
        )
    base = (path.parent / str(content.get("data_dir", "."))).resolve()
    unknown = sorted(set(content) - {"tasks", "data_dir"})
    if unknown:
        raise UsageError(f"{path}: unknown key '{unknown[0]}' at the top: use data_dir and tasks")
    tasks = [_task(entry, index, base, path) for index, entry in enumerate(content["tasks"])]
    names = [task.name for task in tasks]
    duplicate = next((name for name in names if names.count(name) > 1), None)
    if duplicate:
        raise UsageError(f"{path}: task '{duplicate}' is declared twice: give each task its own name")
    return tasks


def _task(entry, index: int, base: Path, path: Path) -> Task:
    where = f"{path}: task {index + 1}"
    if not isinstance(entry, dict):
        raise UsageError(f"{where} is not a mapping of keys: write name, type, files, fields, ...")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise UsageError(f"{where}: key 'name' is missing: give the task a name")
    where = f"{path}: task '{name}'"
    unknown = sorted(set(entry) - KEYS)
    if unknown:
        raise UsageError(f"{where}: unknown key '{unknown[0]}': use {', '.join(sorted(KEYS))}")
    kind = entry.get("type")
    if kind not in TASK_TYPES:
        raise UsageError(f"{where}: key 'type' is {kind!r}: choose from {', '.join(TASK_TYPES)}")
    labels = _labels(entry, kind, where)
    metrics = _metrics(entry, kind, where)
    splits = _splits(entry, kind, base, where)
    loss_weight = entry.get("loss_weight", 1.0)
    if not isinstance(loss_weight, int | float) or isinstance(loss_weight, bool) or not loss_weight >= 0:
        raise UsageError(f"{where}: key 'loss_weight' is {loss_weight!r}: give a number >= 0")
    label_range = entry.get("label_range")
    if kind == "regression":
        if not (isinstance(label_range, list) and len(label_range) == 2 and label_range[0] < label_range[1]):
            raise UsageError(
                f"{where}: key 'label_range' is {label_range!r}: give [low, high] for regression"
            )
        label_range = (float(label_range[0]), float(label_range[1]))
    names = entry.get("label_names")
    return Task(
        name=name.strip().lower(),
        folder="",
        labels=labels,
        metrics=metrics,
        primary_metric=metrics[0],
        head=str(entry.get("head") or name).strip().lower(),
        type=kind,
        label_range=label_range,
        loss_weight=float(loss_weight),
        label_names=tuple(map(str, names)) if names else None,
        **splits,
    )


def _labels(entry: dict, kind: str, where: str) -> tuple[str, ...]:
    labels = entry.get("labels")
    if kind in ("regression", "masked_lm"):
        if labels:
            raise UsageError(f"{where}: key 'labels' does not apply to {kind}: drop it")
        return ()
    if not isinstance(labels, list) or len(labels) < 2 or len(set(map(str, labels))) != len(labels):
        raise UsageError(f"{where}: key 'labels' is {labels!r}: list at least two distinct labels")
    return tuple(str(label) for label in labels)


def _metrics(entry: dict, kind: str, where: str) -> tuple[str, ...]:
    metrics = entry.get("metrics") or ([entry["metric"]] if entry.get("metric") else [DEFAULT_METRIC[kind]])
    if isinstance(metrics, str):
        metrics = [metrics]
    for metric in metrics:
        if metric not in METRICS[kind]:
            raise UsageError(
                f"{where}: metric {metric!r} does not apply to {kind}: choose from {', '.join(METRICS[kind])}"
            )
    return tuple(metrics)


def _splits(entry: dict, kind: str, base: Path, where: str) -> dict[str, SplitFormat | None]:
    files = entry.get("files")
    if not isinstance(files, dict) or not files or set(files) - {"train", "dev", "test"}:
        raise UsageError(f"{where}: key 'files' is {files!r}: map train, dev and/or test to files")
    fields = entry.get("fields") or {}
    if not isinstance(fields, dict) or set(fields) - FIELDS:
        raise UsageError(
            f"{where}: key 'fields' is {fields!r}: map some of {', '.join(sorted(FIELDS))} to fields"
        )
    splits = {}
    for split in ("train", "dev", "test"):
        if split not in files:
            splits[split] = None
            continue
        file = (base / str(files[split])).resolve()
        fmt = entry.get("format") or ("dataset" if file.is_dir() else EXTENSIONS.get(file.suffix))
        if fmt not in FORMATS or fmt == "glue":
            raise UsageError(
                f"{where}: the format of {file.name} is unknown:"
                " add format: jsonl, csv, tsv, conll, text or dataset"
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
