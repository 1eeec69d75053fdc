"""Data files that camtl cannot read as they are (bad-input categories 6 and 10): run.py answers each with
one line naming the file (and the line, or the header) and exit code 2 before any model is loaded, as the
bad-input catalogue (tests/test_bad_inputs.py) checks. Declared tasks' files first, then GLUE's; then
unusual rows that are read as they should be, without a model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bad_input_setups import Setup, Sources, assert_refused, damaged_data, run_forked
from test_bad_inputs import Case, evaluate, prepare_case, train
from test_bad_task_files import declared, on_task_file, task_file

from camtl.data.splits import read_split
from camtl.tasks import register
from camtl.tasks.task_file import load_task_file


def declared_dev(rows: str, name: str = "dev.jsonl", **keys: str) -> Setup:
    """A task file whose task 'mine' reads its dev split from {work}/``name``, which holds ``rows``."""
    entry = declared(files=f"{{train: rows.jsonl, dev: {name}}}", **keys)

    def setup(work: Path, sources: Sources) -> None:
        task_file(entry)(work, sources)
        if name.endswith("/"):
            (work / name).mkdir()
        else:
            (work / name).write_text(rows)

    return setup


def on_dev(expect: str, rows: str, name: str = "dev.jsonl", **keys: str) -> Case:
    return Case(on_task_file(), expect, declared_dev(rows, name, **keys))


def lines(edit) -> callable:
    """A damage for ``damaged_data``: ``edit`` maps the file's lines (bytes, CRLF kept) to new ones."""

    def damage(path: Path) -> None:
        path.write_bytes(b"\n".join(edit(path.read_bytes().split(b"\n"))))

    return damage


def as_a_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


CASES = {
    # Declared tasks: a value that is no text, a header, a label, the kind of thing a file is
    "a null text": on_dev("dev.jsonl:1 has null in field 'text', where text belongs", '{"text": null}\n'),
    "a list as the text": on_dev(
        "dev.jsonl:1 has a list in field 'text'", '{"text": ["a", "b"], "label": "no"}\n'
    ),
    "a dotted path that reaches a list": on_dev(
        "dev.jsonl:1 has a list in field 'q.t'",
        '{"q": [{"t": "a"}, {"t": "b"}], "label": "no"}\n',
        fields="{text_a: q.t, label: label}",
    ),
    "a csv header that names a column twice": on_dev(
        "dev.csv:1 header names 'text' twice: give each column its own name",
        "text,label,text\na,no,b\n",
        "dev.csv",
    ),
    "raw numeric labels without label_names": on_dev(
        "dev.jsonl:1 has label 1, expected one of ['no', 'yes'] (for raw labels 0, 1, ... add label_names",
        '{"text": "a", "label": 1}\n',
    ),
    "format dataset on a jsonl file": on_dev(
        "dev.jsonl, which is a file, not a folder saved with save_to_disk (format dataset): fix files.dev",
        '{"text": "a", "label": "no"}\n',
        format="dataset",
    ),
    "format jsonl on a folder": on_dev(
        "saved, which is a folder, not a file: fix files.dev of task 'mine'", "", "saved/", format="jsonl"
    ),
    # GLUE files
    "RTE/dev.tsv that is a folder": Case(
        evaluate(data_dir="{work}/data"),
        "RTE/dev.tsv, which is a folder, not a file",
        damaged_data("RTE/dev.tsv", as_a_folder),
    ),
    "every RTE training row with an extra column": Case(
        train(data_dir="{work}/data"),
        "RTE/train.tsv has no usable training row: all 24 are malformed, the first (",
        damaged_data(
            "RTE/train.tsv",
            lines(lambda rows: [rows[0]] + [row + b"\tx" if row else row for row in rows[1:]]),
        ),
    ),
    "SST-2/dev.tsv with CR-only line endings": Case(
        evaluate(data_dir="{work}/data", tasks="sst-2"),
        "SST-2/dev.tsv ends its lines with CR alone (classic Mac OS line endings): convert them to LF",
        damaged_data("SST-2/dev.tsv", lambda path: path.write_bytes(path.read_bytes().replace(b"\n", b"\r"))),
    ),
    "an RTE/dev.tsv header with a trailing tab": Case(
        evaluate(data_dir="{work}/data"),
        "RTE/dev.tsv:1 ends with a tab, an empty column 5 that the rows do not have",
        damaged_data("RTE/dev.tsv", lines(lambda rows: [rows[0].rstrip(b"\r") + b"\t\r", *rows[1:]])),
    ),
}


@pytest.fixture(scope="module")
def answers(tiny_bert, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("bad-data-rows")
    sources = Sources(checkpoint=root, trained=root)  # no case needs them
    works = {name: root / f"case-{index}" for index, name in enumerate(CASES)}
    commands = {name: prepare_case(CASES[name], works[name], tiny_bert, sources)[0] for name in CASES}
    results = run_forked(commands, root / "logs")
    return {name: (works[name], results[name]) for name in CASES}


@pytest.mark.parametrize("name", list(CASES))
def test_a_bad_data_file_gets_one_line_and_exit_code_2(name, answers):
    assert_refused(*answers[name], CASES[name].expect)


def test_the_first_bad_glue_training_row_is_named_in_the_warning(tmp_path, caplog):
    damaged_data("RTE/train.tsv", lines(lambda rows: [*rows[:3], rows[3] + b"\tx", *rows[4:]]))(
        tmp_path, None
    )
    examples = read_split(tmp_path / "data", "rte", "train")
    assert examples.skipped == 1 and len(examples) == 23
    assert "skipped 1 malformed training rows (the first, " in caplog.text
    assert "train.tsv:4, has 5 columns, expected 4)" in caplog.text


def row(**values) -> str:
    return json.dumps({"text": "a", "label": "no"} | values) + "\n"


# Unusual rows that are read as they should be: (the task's keys, its file's rows, the split read, what
# the examples hold). Each task its own name: they stay registered in this process.
READ = {
    "ids in some train rows only (a row is read whole before it is kept)": (
        {"name": "train-ids", "fields": "{text_a: text, label: label, id: id}"},
        row(id="x") + row() + row(text="c"),
        "train",
        {"text_a": ["a", "a", "c"], "labels": [0.0, 0.0, 0.0], "ids": ["x", "2", "3"]},
    ),
    "ids in no dev row (they come with the test file alone)": (
        {"name": "dev-no-ids", "fields": "{text_a: text, label: label, id: id}"},
        row() + row(label="yes"),
        "dev",
        {"text_a": ["a", "a"], "labels": [0.0, 1.0], "ids": ["1", "2"]},
    ),
    "labels 1.0 and 0.0 for labels [0, 1], as pandas writes them": (
        {"name": "float-labels", "labels": "[0, 1]"},
        row(label=1.0) + row(label=0.0),
        "dev",
        {"labels": [1.0, 0.0]},
    ),
}


@pytest.mark.parametrize("name", list(READ))
def test_unusual_rows_are_read_as_they_should_be(name, tmp_path):
    keys, rows, split, expected = READ[name]
    (tmp_path / "odd.jsonl").write_text(rows)
    task_file(declared(**keys, files="{train: odd.jsonl, dev: odd.jsonl}"))(tmp_path, None)
    for task in load_task_file(tmp_path / "tasks.yaml"):
        register(task)
    examples = read_split(tmp_path, keys["name"], split)
    assert {key: getattr(examples, key) for key in expected} == expected
    assert examples.skipped == 0
