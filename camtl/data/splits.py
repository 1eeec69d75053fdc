"""Reading GLUE files into examples, and the check behind ``python -m camtl.data check`` (__main__.py).

The official files are tab-separated with quoting disabled: several contain stray ``"``
characters that a CSV reader would treat as quotes. Files may start with a BOM, use CRLF, or
lack a final newline; ID cells may be empty (IDs are kept as strings, never parsed).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from camtl.data.examples import Examples
from camtl.data.readers import RowError, read_examples, report_skipped
from camtl.errors import UsageError
from camtl.tasks import TASKS, Task

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
DOWNLOAD_HINT = "python download_glue_data.py --data_dir DIR --tasks all"


def split_path(data_dir: str | Path, task: str, split: str) -> Path:
    fmt = TASKS[task].split(split)
    if fmt is None:
        raise UsageError(f"task '{task}' has no {split} split in GLUE")
    return Path(data_dir) / TASKS[task].folder / fmt.filename


def split_exists(data_dir: str | Path, task: str, split: str) -> bool:
    """The split is there: a file, or for a saved Hugging Face dataset a folder."""
    path = split_path(data_dir, task, split)
    return path.is_dir() if TASKS[task].split(split).format == "dataset" else path.is_file()


def is_declared(task: str) -> bool:
    """A task of a task file (its files are the user's, named in the file), not one camtl downloads."""
    return not TASKS[task].folder


def require_split(data_dir: str | Path, task: str, split: str, needed_by: str) -> Path:
    """The split's path, or a UsageError naming the missing file and how to get it."""
    path = split_path(data_dir, task, split)
    if split_exists(data_dir, task, split):
        return path
    if is_declared(task):
        fix = f"fix files.{split} of task '{task}' in --task_file"
    else:
        fix = task_folder_problem(data_dir, task)
        if fix:
            raise UsageError(fix)
        fix = f"get GLUE with `{DOWNLOAD_HINT}`"
    if path.exists():  # the other kind: a file where a saved dataset's folder belongs, or the reverse
        dataset = TASKS[task].split(split).format == "dataset"
        kind = (
            "a file, not a folder saved with save_to_disk (format dataset)"
            if dataset
            else "a folder, not a file"
        )
        raise UsageError(f"{needed_by} needs {path}, which is {kind}: {fix}")
    raise UsageError(f"{needed_by} needs {path}, which does not exist: {fix}")


def task_folder_problem(data_dir: str | Path, task: str | None = None) -> str | None:
    """The message when ``data_dir`` is a task's own folder (glue/RTE) rather than the folder that holds
    the tasks' folders (glue): it has a task folder's name, or holds ``task``'s split files directly."""
    data_dir, resolved = Path(data_dir), Path(data_dir).resolve()
    for spec in TASKS.values():
        parts = Path(spec.folder).parts  # SuperGLUE/BoolQ: two levels
        if parts and [p.lower() for p in resolved.parts[-len(parts) :]] == [p.lower() for p in parts]:
            as_given = ".." not in data_dir.parts and len(data_dir.parts) >= len(parts)  # glue/RTE -> glue
            parent = (data_dir if as_given else resolved).parents[len(parts) - 1]
            return f"--data_dir {data_dir} is the {spec.folder} folder itself: pass its parent {parent}"
    if task is not None and not is_declared(task):
        spec = TASKS[task]
        here = [
            f.filename for f in (spec.train, spec.dev, spec.test) if f and (data_dir / f.filename).exists()
        ]
        if here:
            return (
                f"--data_dir {data_dir} holds {', '.join(here)} itself, not in a {spec.folder} folder:"
                f" move the files into {data_dir / spec.folder}, or pass the folder that holds {spec.folder}/"
            )
    return None


def _read_lines(path: Path) -> list[str | UnicodeDecodeError]:
    """The file's lines, each decoded on its own: an undecodable line is its UnicodeDecodeError, so that a
    training file loses only that row and a dev or test file's error can name the line."""
    raw = path.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UsageError(
            f"{path} is UTF-16 encoded, not UTF-8: convert it (iconv -f UTF-16 -t UTF-8) or re-download it"
        )
    # A leading UTF-8 BOM is dropped; splitting on "\n" alone keeps unusual Unicode separators inside text.
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    if b"\n" not in raw and b"\r" in raw.rstrip(b"\r"):  # would be read as one line: a header, no rows
        raise UsageError(
            f"{path} ends its lines with CR alone (classic Mac OS line endings): convert them to LF"
            f" (tr '\\r' '\\n' < {path.name} > fixed.tsv) or re-download it"
        )
    lines: list[str | UnicodeDecodeError] = []
    for line in raw.split(b"\n"):
        try:
            lines.append(line.removesuffix(b"\r").decode("utf-8"))
        except UnicodeDecodeError as error:
            lines.append(error)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _utf8_problem(error: UnicodeDecodeError) -> str:
    return f"is not valid UTF-8 (byte 0x{error.object[error.start]:02x} at column {error.start + 1})"


def _not_utf8(path: Path, line_number: int, error: UnicodeDecodeError) -> UsageError:
    return UsageError(
        f"{path}:{line_number} {_utf8_problem(error)}: save the file as UTF-8 or re-download it"
    )


def _columns_needed(fmt, needs_label: bool) -> int:
    used = (fmt.text_a, fmt.text_b, fmt.label if needs_label else None, fmt.index)
    return max(i for i in used if i is not None) + 1


def _parse_label(task: Task, cell: str) -> float | None:
    if task.is_regression:
        try:
            value = float(cell)
        except ValueError:
            return None
        low, high = task.label_range or (float("-inf"), float("inf"))
        return value if low <= value <= high else None
    return float(task.labels.index(cell)) if cell in task.labels else None


_MNLI = ("index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
         "sentence1_parse", "sentence2_parse", "sentence1", "sentence2")  # fmt: skip
_PAIR = ("index", "sentence1", "sentence2", "label")
_STSB = ("index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2",
         "score")  # fmt: skip
_MRPC = ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")
# The official files' header names (download_glue_data.py), by task and split: camtl reads columns by
# position, so a file whose columns were reordered or renamed would be read as something else.
HEADER_NAMES: dict[tuple[str, str], tuple[str, ...]] = {
    ("cola", "test"): ("index", "sentence"),
    ("sst-2", "train"): ("sentence", "label"),
    ("sst-2", "dev"): ("sentence", "label"),
    ("sst-2", "test"): ("index", "sentence"),
    ("mrpc", "train"): _MRPC,
    ("mrpc", "dev"): _MRPC,
    ("mrpc", "test"): ("index", *_MRPC[1:]),
    ("qqp", "train"): ("id", "qid1", "qid2", "question1", "question2", "is_duplicate"),
    ("qqp", "dev"): ("id", "qid1", "qid2", "question1", "question2", "is_duplicate"),
    ("qqp", "test"): ("id", "question1", "question2"),
    ("mnli", "train"): (*_MNLI, "label1", "gold_label"),
    ("mnli", "dev"): (*_MNLI, "label1", "label2", "label3", "label4", "label5", "gold_label"),
    ("mnli-mm", "dev"): (*_MNLI, "label1", "label2", "label3", "label4", "label5", "gold_label"),
    ("mnli", "test"): _MNLI,
    ("mnli-mm", "test"): _MNLI,
    ("ax", "test"): _PAIR[:3],
    **{("sts-b", split): _STSB for split in SPLITS},
    **{("qnli", split): ("index", "question", "sentence", "label") for split in SPLITS},
    **{(task, split): _PAIR for task in ("rte", "wnli") for split in SPLITS},
}


def _check_header_names(path: Path, header: str, task: str, fmt, split: str) -> None:
    """Each column camtl reads has the official file's name there (compared without case)."""
    expected = HEADER_NAMES.get((task, split), ())
    names = header.split("\t")
    for position in (fmt.text_a, fmt.text_b, fmt.label if split != "test" else None, fmt.index):
        if position is None or position >= len(expected) or position >= len(names):
            continue
        if names[position].strip().lower() != expected[position].lower():
            raise UsageError(
                f"{path}:1 has {names[position]!r} in column {position + 1}, where camtl reads"
                f" {expected[position]}: put the columns in the official order ({', '.join(expected)})"
                " or re-download the file"
            )


def _check_layout(path: Path, lines: list, fmt, split: str) -> int:
    """The file's column count, once its header is readable and wide enough and a dev or test file has
    rows: problems that would otherwise surface as an IndexError or after training."""
    if fmt.header and not lines:
        raise UsageError(f"{path} is empty: re-download it with `{DOWNLOAD_HINT}`")
    if fmt.header and isinstance(lines[0], UnicodeDecodeError):
        raise _not_utf8(path, 1, lines[0])
    num_columns = len(lines[0].split("\t")) if fmt.header else fmt.num_columns
    first_row = lines[1].split("\t") if fmt.header and len(lines) > 1 and isinstance(lines[1], str) else None
    if first_row and lines[0].endswith("\t") and len(first_row) == num_columns - 1:  # else every row is bad
        raise UsageError(
            f"{path}:1 ends with a tab, an empty column {num_columns} that the rows do not have: remove it"
            " or re-download the file"
        )
    needed = _columns_needed(fmt, needs_label=split != "test")
    if num_columns < needed:
        raise UsageError(
            f"{path}:1 has a header of {num_columns} columns, expected at least {needed}:"
            " fix or re-download the file"
        )
    if split != "train" and len(lines) <= (1 if fmt.header else 0):  # an empty train file: run.py's check
        has = "a header but no rows" if fmt.header else "no rows"
        raise UsageError(f"{path} has {has}: re-download it with `{DOWNLOAD_HINT}`")
    return num_columns


def read_split(data_dir: str | Path, task: str, split: str, max_examples: int | None = None) -> Examples:
    """Parse one split. Bad training rows are skipped and counted; a bad dev/test row is an error."""
    spec = TASKS[task]
    fmt = spec.split(split)
    path = require_split(data_dir, task, split, needed_by=f"{task} {split}")
    if fmt.format != "glue":
        return read_examples(path, spec, split, max_examples)
    lines = _read_lines(path)
    first_row = 1 if fmt.header else 0
    needs_label = split != "test"
    num_columns = _check_layout(path, lines, fmt, split)
    if fmt.header:
        _check_header_names(path, lines[0], task, fmt, split)

    text_a, text_b, labels, ids = [], [], [], []
    skipped, first_skipped = 0, None  # (line, problem) of the first malformed training row
    for line_number, line in enumerate(lines[first_row:], start=first_row + 1):
        if max_examples is not None and len(text_a) >= max_examples:
            break
        if isinstance(line, UnicodeDecodeError) and split != "train":
            raise _not_utf8(path, line_number, line)
        try:
            cells, label = _parse_row(spec, fmt, line, num_columns, needs_label)
        except RowError as problem:
            if split != "train":
                raise UsageError(f"{path}:{line_number} {problem}: fix or re-download the file") from None
            skipped, first_skipped = skipped + 1, first_skipped or (line_number, problem)
            continue
        text_a.append(cells[fmt.text_a])
        if fmt.text_b is not None:
            text_b.append(cells[fmt.text_b])
        if needs_label:
            labels.append(label)
        ids.append(cells[fmt.index] if fmt.index is not None else "")
    examples = Examples(
        task=task,
        split=split,
        text_a=text_a,
        text_b=text_b if fmt.text_b is not None else None,
        labels=labels if needs_label else None,
        ids=ids,
        skipped=skipped,
    )
    if first_skipped:
        report_skipped(path, examples, *first_skipped, fix="fix or re-download the file")
    return examples


def _parse_row(spec: Task, fmt, line: str | UnicodeDecodeError, num_columns: int, needs_label: bool):
    """A row's cells and its label (None without one); a RowError saying what is wrong with the row."""
    if isinstance(line, UnicodeDecodeError):
        raise RowError(_utf8_problem(line))
    cells = line.split("\t")
    if len(cells) != num_columns:
        raise RowError(f"has {len(cells)} columns, expected {num_columns}")
    if not needs_label:
        return cells, None
    label = _parse_label(spec, cells[fmt.label])
    if label is None:
        expected = "a number in the label range" if spec.is_regression else f"one of {list(spec.labels)}"
        raise RowError(f"has label {cells[fmt.label]!r}, expected {expected}")
    return cells, label


def check_data_dir(data_dir: str | Path, tasks: list[str]) -> dict:
    """Parse every split of every task that exists; report counts, label distributions and problems."""
    if not Path(data_dir).is_dir():
        raise UsageError(f"--data_dir {data_dir} is not a directory: get GLUE with `{DOWNLOAD_HINT}`")
    report = {"tasks": {}, "labels": {}, "missing": [], "problems": [], "warnings": []}
    for task in tasks:
        spec = TASKS[task]
        for split in SPLITS:
            if spec.split(split) is None:
                continue
            path = split_path(data_dir, task, split)
            if not path.exists():  # the wrong kind (a folder for a file) is read_split's problem to name
                report["missing"].append(str(path))
                continue
            try:
                examples = read_split(data_dir, task, split)
            except UsageError as error:
                report["problems"].append(str(error))
                continue
            report["tasks"].setdefault(task, {})[split] = len(examples)
            if examples.skipped:
                report["warnings"].append(f"{path}: {examples.skipped} malformed training rows skipped")
            if examples.labels is not None and spec.type in ("classification", "multiple_choice"):
                counts = Counter(spec.labels[int(label)] for label in examples.labels)
                report["labels"].setdefault(task, {})[split] = dict(sorted(counts.items()))
    return report


def format_check_report(report: dict) -> str:
    lines = [f"{'task':<8} {'split':<6} {'examples':>9}  labels"]
    for task, splits in report["tasks"].items():
        for split, count in splits.items():
            labels = report["labels"].get(task, {}).get(split, {})
            distribution = " ".join(f"{name}:{n}" for name, n in labels.items())
            lines.append(f"{task:<8} {split:<6} {count:>9}  {distribution}")
    for title, key in (
        ("missing (not fatal)", "missing"),
        ("warnings", "warnings"),
        ("PROBLEMS", "problems"),
    ):
        if report[key]:
            lines.append(f"{title}:")
            lines.extend(f"  {item}" for item in report[key])
    return "\n".join(lines)
