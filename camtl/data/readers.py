"""Reading the non-GLUE formats (jsonl, csv/tsv, conll, text, saved Hugging Face datasets) into Examples.

GLUE's own files are read by ``camtl.data``; this module reads every other ``SplitFormat``. Fields are
keys (dotted paths reach into nested objects and lists: ``question.choices.text``) or templates
(``"{word}: {sentence1}"``). As for GLUE, a malformed training row is skipped and counted, a malformed
dev or test row is an error naming the file and line.

One dialect for every format: UTF-8, a leading BOM dropped (``read_text``). csv and tsv files use CSV
quoting (a field in double quotes may hold the delimiter, ``""`` is one quote), as Python's csv module and
pandas write them (SuperGLUE's WiC train.tsv is such a file); GLUE's own tsv files are read with quoting
off instead, since their stray quotes are text (``camtl.data.splits``).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

from camtl.data.examples import Examples
from camtl.errors import UsageError
from camtl.tasks import Task
from camtl.tasks.spec import SplitFormat

logger = logging.getLogger(__name__)

_TEMPLATE_FIELD = re.compile(r"{([^{}]+)}")
_BETWEEN_ITEMS = re.compile(r"[ \t\r\n,]*")  # what separates the items of a valid JSON array
_WHOLE_NUMBER = re.compile(r"\d+\.0*")  # 1.0: an integer label as pandas writes it in a column with gaps


class RowError(ValueError):
    """A row that cannot be used: the message says why (it becomes ``file:line message``)."""


def read_text(path: Path) -> str:
    """A text file's content, the same way for every format: UTF-8, a leading BOM dropped; anything else
    is refused in one line (never decoded with replacement characters)."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UsageError(f"{path} is not valid UTF-8 ({error.reason}): save the file as UTF-8") from None


def records(path: Path, fmt: SplitFormat) -> Iterator[tuple[int, dict | RowError]]:
    """(line number, record) of a jsonl, csv, tsv or saved-dataset split; a bad line is its RowError."""
    if fmt.format == "dataset":
        yield from _dataset_records(path)
    elif fmt.format == "jsonl":
        raw = path.read_bytes().removeprefix(codecs.BOM_UTF8)
        array = _json_array(raw)
        if array is not None:
            yield from array
            return
        for number, line in enumerate(raw.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError:
                yield number, RowError("is not valid UTF-8")
                continue
            except json.JSONDecodeError as error:
                yield number, RowError(f"is not valid JSON ({error.msg})")
                continue
            yield number, record if isinstance(record, dict) else RowError("is not a JSON object")
    else:
        text = read_text(path)
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if fmt.format == "tsv" else ",")
        names = [name for name in reader.fieldnames or () if name]  # empty names: no field can name them
        twice = next((name for name in names if names.count(name) > 1), None)
        if twice is not None:  # DictReader would keep the last such column without a word
            raise UsageError(f"{path}:1 header names {twice!r} twice: give each column its own name")
        for record in reader:
            if None in record or any(value is None for value in record.values()):
                yield (
                    reader.line_num,
                    RowError(f"does not have the header's {len(reader.fieldnames)} columns"),
                )
            else:
                yield reader.line_num, record


def _json_array(raw: bytes) -> list[tuple[int, dict | RowError]] | None:
    """The records of a file that is one JSON array (``json.dump`` of a list, often named .json), each with
    the line its item starts on; None for anything else (JSON Lines is read line by line)."""
    if not raw.lstrip().startswith(b"["):
        return None
    try:
        text = raw.decode("utf-8")
        json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError):  # e.g. JSON Lines whose rows are arrays
        return None
    decoder, rows = json.JSONDecoder(), []
    position, line = text.index("[") + 1, 1 + text.count("\n", 0, text.index("["))
    while True:
        start = _BETWEEN_ITEMS.match(text, position).end()
        if text[start] == "]":
            return rows
        line += text.count("\n", position, start)
        record, position = decoder.raw_decode(text, start)
        rows.append((line, record if isinstance(record, dict) else RowError("is not a JSON object")))
        line += text.count("\n", start, position)


def _dataset_records(path: Path) -> Iterator[tuple[int, dict]]:
    import datasets  # the saved-dataset format is the datasets library's; loaded only where used

    try:
        dataset = datasets.load_from_disk(str(path))
    except Exception as error:  # the library raises several types for a directory it cannot read
        raise UsageError(
            f"{path} is not a saved Hugging Face dataset ({error}): save it with save_to_disk"
        ) from None
    if isinstance(dataset, datasets.DatasetDict):
        raise UsageError(
            f"{path} holds several splits ({', '.join(dataset)}): point each split at one of them"
        )
    yield from enumerate(dataset, start=1)


def field_value(record: dict, spec: str):
    """A field of a record: a dotted path (through lists: every element's value) or a {template}."""
    if "{" in spec:
        try:
            return _TEMPLATE_FIELD.sub(
                lambda match: _as_text(_lookup(record, match.group(1)), match.group(1)), spec
            )
        except KeyError as error:
            raise RowError(f"has no field {error.args[0]!r}") from None
    try:
        return _lookup(record, spec)
    except KeyError as error:
        raise RowError(f"has no field {error.args[0]!r}") from None


def _lookup(value, path: str):
    for key in path.split("."):
        if isinstance(value, list):
            value = [item[key] for item in value]
        elif isinstance(value, dict) and key in value:
            value = value[key]
        else:
            raise KeyError(path)
    return value


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _as_text(value, field: str) -> str:
    """A text field's value: a null, a list or an object is a RowError, not the text "None" or "['a']"."""
    if value is None or isinstance(value, list | dict):
        kind = "null" if value is None else "a list" if isinstance(value, list) else "an object"
        raise RowError(f"has {kind} in field {field!r}, where text belongs")
    return _text(value)


def label_index(task: Task, raw) -> float:
    """The label as the task's class index (or the regression score); a RowError when it is not one."""
    if task.type == "regression":
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise RowError(f"has label {raw!r}, expected a number") from None
        low, high = task.label_range or (float("-inf"), float("inf"))
        if not low <= value <= high:
            raise RowError(f"has label {raw!r}, expected a number in {low}..{high}")
        return value
    name = _text(raw).strip()
    if name not in task.labels and _WHOLE_NUMBER.fullmatch(name):
        name = name.split(".")[0]
    if name.isdigit() and name not in task.labels and int(name) < len(task.label_names or ()):
        name = task.label_names[int(name)]
    if name not in task.labels:
        numbered = name.isdigit() and task.label_names is None and not any(map(str.isdigit, task.labels))
        hint = " (for raw labels 0, 1, ... add label_names: the labels they stand for)" if numbered else ""
        raise RowError(f"has label {raw!r}, expected one of {list(task.labels)}{hint}")
    return float(task.labels.index(name))


def conll_sentences(path: Path) -> Iterator[tuple[int, list[str], list[str]] | tuple[int, RowError]]:
    """(first line number, tokens, tags) per sentence of a ``token<TAB>tag`` file, blank lines between."""
    lines = read_text(path).split("\n")
    tokens, tags, start, problem = [], [], 1, None
    for number, line in enumerate([*lines, ""], start=1):
        if not line.strip():
            if problem:
                yield start, problem
            elif tokens:
                yield start, tokens, tags
            tokens, tags, start, problem = [], [], number + 1, None
            continue
        cells = line.rstrip("\r").split("\t")
        if len(cells) < 2 or not cells[0]:
            problem = problem or RowError(f"(line {number}) is not token<TAB>tag")
        else:
            tokens.append(cells[0])
            tags.append(cells[-1].strip())


def read_examples(path: Path, task: Task, split: str, max_examples: int | None = None) -> Examples:
    """One non-GLUE split of ``task`` as Examples (texts, choices or tokens, labels, ids)."""
    fmt = task.split(split)
    needs_label = split != "test" and fmt.label is not None
    examples = Examples(task=task.name, split=split, text_a=[], text_b=[] if fmt.text_b else None,
                        labels=[] if needs_label else None, ids=[])  # fmt: skip
    if task.type == "multiple_choice":
        examples.choices = []
    first_skipped = None  # (line, problem) of the first malformed training row
    lines_of_ids: dict[str, int] = {}
    for number, row in _rows(path, fmt):
        if max_examples is not None and len(examples) >= max_examples:
            break
        try:
            if isinstance(row, RowError):
                raise row
            _add(examples, task, fmt, row, number)
        except RowError as problem:
            if split == "train":
                examples.skipped += 1
                first_skipped = first_skipped or (number, problem)
                continue
            raise UsageError(f"{path}:{number} {problem}: fix the file or the task's fields") from None
        if fmt.index is not None and split != "train":  # prediction files are keyed by these ids
            _check_unique_id(path, number, examples.ids[-1], lines_of_ids)
    if first_skipped:
        report_skipped(path, examples, *first_skipped, fix="fix the file or the task's fields")
    if split != "train" and not len(examples):
        raise UsageError(f"{path} has no rows: add some, or fix the task's files in --task_file")
    return examples


def _check_unique_id(path: Path, number: int, row_id: str, lines_of_ids: dict[str, int]) -> None:
    if row_id in lines_of_ids:
        raise UsageError(
            f"{path}:{number} has id {row_id!r}, as line {lines_of_ids[row_id]} does: give each row its own"
            " id (prediction files are keyed by it), or drop fields.id to number the rows"
        )
    lines_of_ids[row_id] = number


def report_skipped(path: Path, examples: Examples, line: int, problem: RowError, fix: str) -> None:
    """A warning naming the first malformed training row; an error when no row is usable."""
    if not len(examples):
        raise UsageError(
            f"{path} has no usable training row: all {examples.skipped} are malformed, the first"
            f" ({path}:{line}) {problem}: {fix}"
        )
    logger.warning(
        "%s: skipped %d malformed training rows (the first, %s:%d, %s)",
        path, examples.skipped, path, line, problem,
    )  # fmt: skip


def _rows(path: Path, fmt: SplitFormat) -> Iterator[tuple[int, dict | RowError]]:
    if fmt.format == "conll":
        for number, *sentence in conll_sentences(path):
            yield number, sentence[0] if len(sentence) == 1 else {"tokens": sentence[0], "tags": sentence[1]}
    elif fmt.format == "text":
        lines = read_text(path).splitlines()
        for number, line in enumerate(lines, start=1):
            if line.strip():
                yield number, {"text": line.strip()}
    else:
        yield from records(path, fmt)


def _add(examples: Examples, task: Task, fmt: SplitFormat, row: dict, number: int) -> None:
    """Append one row; every field is read before anything is appended."""
    needs_label = examples.labels is not None
    row_id = _row_id(row, fmt, examples.split, number)
    if task.type == "token_classification":
        tokens = field_value(row, fmt.text_a)
        tags = field_value(row, fmt.label) if needs_label else None
        if not isinstance(tokens, list) or (needs_label and not isinstance(tags, list)):
            raise RowError(f"needs lists of tokens ({fmt.text_a!r}) and tags ({fmt.label!r})")
        if needs_label and len(tokens) != len(tags):  # a tag past the last token would be an IndexError
            raise RowError(f"has {len(tokens)} tokens but {len(tags)} tags: give one tag per token")
        tokens = [_as_text(token, fmt.text_a) for token in tokens]
        if needs_label:
            unknown = sorted(set(tags) - set(task.labels))
            if unknown:
                raise RowError(f"has tag {unknown[0]!r}, expected one of {list(task.labels)}")
            examples.labels.append([task.labels.index(tag) for tag in tags])
        examples.text_a.append(tokens)
        examples.ids.append(row_id)
        return
    text_a = _as_text(field_value(row, fmt.text_a), fmt.text_a)
    text_b = _as_text(field_value(row, fmt.text_b), fmt.text_b) if fmt.text_b else None
    choices = _choices(row, fmt) if task.type == "multiple_choice" else None
    label = label_index(task, field_value(row, fmt.label)) if needs_label else None
    if choices is not None and label is not None and label >= len(choices):
        raise RowError(f"has answer {task.labels[int(label)]!r} but {len(choices)} choices")
    examples.text_a.append(text_a)
    if text_b is not None:
        examples.text_b.append(text_b)
    if choices is not None:
        examples.choices.append(choices)
    if label is not None:
        examples.labels.append(label)
    examples.ids.append(row_id)


def _row_id(row: dict, fmt: SplitFormat, split: str, number: int) -> str:
    """The row's id field; its line number without fields.id, or for a train or dev row that lacks the
    field (ids often come with the test file alone: only test ids key the predictions)."""
    if fmt.index is None:
        return str(number)
    try:
        value = field_value(row, fmt.index)
    except RowError:
        if split == "test":
            raise
        return str(number)
    return _as_text(value, fmt.index)


def _choices(row: dict, fmt: SplitFormat) -> list[str]:
    if isinstance(fmt.choices, str):
        values = field_value(row, fmt.choices)
        if not isinstance(values, list) or not values:
            raise RowError(f"has no list of choices in {fmt.choices!r}")
        return [_as_text(value, fmt.choices) for value in values]
    return [_as_text(field_value(row, name), name) for name in fmt.choices]
