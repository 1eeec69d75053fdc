"""One dialect for every file format (camtl.data.readers): UTF-8 with a leading BOM dropped, invalid UTF-8
refused in one line, CSV quoting in csv and tsv files."""

import codecs

import pytest

from camtl.data.readers import conll_sentences, read_text, records
from camtl.errors import UsageError
from camtl.tasks.spec import SplitFormat

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


def test_invalid_utf8_is_refused_in_one_line_in_every_format(tmp_path):
    path = tmp_path / "latin1.tokens"
    path.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(UsageError) as refused:
        read_text(path)
    assert str(path) in str(refused.value) and "save the file as UTF-8" in str(refused.value)
