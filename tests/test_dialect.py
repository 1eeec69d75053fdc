"""One dialect for every file format (camtl.data.readers) and for task files: UTF-8 with a leading BOM
dropped, invalid UTF-8 refused in one line, CSV quoting in csv and tsv files."""

import codecs
import json

import pytest

from camtl.data.readers import conll_sentences, read_text, records
from camtl.errors import UsageError
from camtl.tasks.spec import SplitFormat
from camtl.tasks.task_file import load_task_file

BOM = codecs.BOM_UTF8


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("rows.jsonl", b'{"text": "first"}\n{"text": "second"}\n', [{"text": "first"}, {"text": "second"}]),
        (
            "rows.csv",
            b'text,label\n"first, with a comma",1\n',
            [{"text": "first, with a comma", "label": "1"}],
        ),
        ("rows.tsv", b'text\tlabel\n"a ""quoted"" word"\t0\n', [{"text": 'a "quoted" word', "label": "0"}]),
    ],
)
@pytest.mark.parametrize("bom", [b"", BOM], ids=["plain", "bom"])
def test_records_read_alike_with_and_without_a_bom(tmp_path, name, content, expected, bom):
    path = tmp_path / name
    path.write_bytes(bom + content)
    fmt = SplitFormat(name, format=name.rsplit(".", 1)[1])
    assert [record for _, record in records(path, fmt)] == expected


def test_conll_and_text_drop_a_bom_too(tmp_path):
    conll = tmp_path / "tags.conll"
    conll.write_bytes(BOM + b"Paris\tB-loc\nis\tO\n\nRome\tB-loc\n")
    assert [tokens for _, tokens, _ in conll_sentences(conll)] == [["Paris", "is"], ["Rome"]]
    text = tmp_path / "wiki.tokens"
    text.write_bytes(BOM + b"first line\n")
    assert read_text(text) == "first line\n"


TASK = {"name": "bom", "type": "classification", "files": {"dev": "dev.jsonl"}, "fields": {"text_a": "t"},
        "labels": ["no", "yes"]}  # fmt: skip


@pytest.mark.parametrize(
    ("name", "content"),
    [("tasks.json", json.dumps({"tasks": [TASK]})), ("tasks.yaml", f"tasks:\n  - {json.dumps(TASK)}\n")],
)
def test_a_task_file_drops_a_bom_too(tmp_path, name, content):
    (tmp_path / name).write_bytes(BOM + content.encode())
    (task,) = load_task_file(tmp_path / name)
    assert (task.name, task.labels) == ("bom", ("no", "yes"))


@pytest.mark.parametrize(
    ("name", "content", "read"),
    [
        ("latin1.tokens", "caf\xe9\n".encode("latin-1"), read_text),
        ("tasks.yaml", "tasks: []\n".encode("utf-16"), load_task_file),
        ("tasks.json", '{"tasks": ["caf\xe9"]}'.encode("latin-1"), load_task_file),
    ],
)
def test_invalid_utf8_is_refused_in_one_line_in_every_format(tmp_path, name, content, read):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UsageError) as refused:
        read(path)
    assert str(path) in str(refused.value) and "save the file as UTF-8" in str(refused.value)
