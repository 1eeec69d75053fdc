import zipfile

import numpy as np
import pytest

from camtl.errors import UsageError
from camtl.tasks import TASKS
from camtl.training.submission import SUBMISSION_ZIP, format_prediction, write_submission


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("mnli", ["contradiction", "entailment", "neutral"]),
        ("mnli-mm", ["contradiction", "entailment", "neutral"]),
        ("ax", ["contradiction", "entailment", "neutral"]),
        ("qnli", ["entailment", "not_entailment"]),
        ("rte", ["entailment", "not_entailment"]),
        ("cola", ["0", "1"]),
        ("sst-2", ["0", "1"]),
        ("mrpc", ["0", "1"]),
        ("qqp", ["0", "1"]),
        ("wnli", ["0", "1"]),
    ],
)
def test_class_indices_become_the_glue_label_spelling(task, expected):
    assert [format_prediction(task, index) for index in range(len(expected))] == expected
    assert format_prediction(task, np.int64(1)) == expected[1]


def test_stsb_scores_are_clipped_to_the_label_range_with_three_decimals():
    assert format_prediction("sts-b", 3.14159) == "3.142"
    assert format_prediction("sts-b", np.float32(2.0)) == "2.000"
    assert format_prediction("sts-b", -0.4) == "0.000"
    assert format_prediction("sts-b", 5.7) == "5.000"


def test_bad_predictions_raise():
    with pytest.raises(ValueError, match="outside"):
        format_prediction("rte", 2)
    with pytest.raises(ValueError, match="outside"):
        format_prediction("cola", -1)
    with pytest.raises(TypeError):
        format_prediction("sst-2", 0.7)
    with pytest.raises(ValueError, match="finite"):
        format_prediction("sts-b", float("nan"))
    with pytest.raises(UsageError, match="unknown task"):
        format_prediction("squad", 0)


def read_rows(path):
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "", "the file ends with a newline"
    return [line.split("\t") for line in lines[:-1]]


def test_one_file_per_task_with_header_and_a_row_per_example(tmp_path):
    rng = np.random.default_rng(0)
    predictions = {}
    for task, spec in TASKS.items():
        if not spec.glue:
            continue
        count = 3 + len(predictions)
        ids = [str(100 + row) for row in range(count)]
        values = rng.uniform(-1, 6, count) if spec.is_regression else rng.integers(0, spec.num_labels, count)
        predictions[task] = (ids, values)

    zip_path = write_submission(predictions, tmp_path / "submission")

    assert zip_path == tmp_path / "submission" / SUBMISSION_ZIP
    for task, (ids, values) in predictions.items():
        rows = read_rows(tmp_path / "submission" / TASKS[task].submission_file)
        assert rows[0] == ["index", "prediction"]
        assert len(rows) == 1 + len(values)
        assert [row[0] for row in rows[1:]] == ids
        assert [row[1] for row in rows[1:]] == [format_prediction(task, value) for value in values.tolist()]
    expected_files = {
        "CoLA.tsv",
        "SST-2.tsv",
        "MRPC.tsv",
        "STS-B.tsv",
        "QQP.tsv",
        "MNLI-m.tsv",
        "MNLI-mm.tsv",
        "QNLI.tsv",
        "RTE.tsv",
        "WNLI.tsv",
        "AX.tsv",
    }
    assert {path.name for path in (tmp_path / "submission").iterdir()} == expected_files | {SUBMISSION_ZIP}


def test_zip_holds_exactly_the_written_files_flat(tmp_path):
    (tmp_path / "old.tsv").write_text("stale\n")
    predictions = {
        "rte": (["0", "1"], np.array([1, 0])),
        "sts-b": (["0", "1", "2"], np.array([0.25, 4.5, 5.5])),
    }
    zip_path = write_submission(predictions, tmp_path)
    with zipfile.ZipFile(zip_path) as archive:
        assert sorted(archive.namelist()) == ["RTE.tsv", "STS-B.tsv"]
        for name in archive.namelist():
            assert archive.read(name) == (tmp_path / name).read_bytes()
    assert read_rows(tmp_path / "STS-B.tsv")[1:] == [["0", "0.250"], ["1", "4.500"], ["2", "5.000"]]


def test_a_partial_prediction_removes_an_earlier_whole_predictions_zip(tmp_path):
    assert write_submission({"cola": (["0", "1"], np.array([0, 1]))}, tmp_path) == tmp_path / SUBMISSION_ZIP
    assert write_submission({"cola": (["0"], np.array([1]))}, tmp_path, partial=["cola"]) is None
    assert not (tmp_path / SUBMISSION_ZIP).exists()  # no zip left pairing with the partial CoLA.tsv
    assert (tmp_path / "CoLA.tsv").read_text().splitlines() == ["index\tprediction", "0\t1"]


def test_blank_ids_fall_back_to_row_positions(tmp_path):
    write_submission({"sst-2": (["", "", ""], np.array([1, 0, 1]))}, tmp_path)
    assert read_rows(tmp_path / "SST-2.tsv")[1:] == [["0", "1"], ["1", "0"], ["2", "1"]]
    # With some ids missing, every row is numbered, so no id can repeat.
    write_submission({"sst-2": (["2", "", "0"], np.array([1, 0, 1]))}, tmp_path)
    assert [row[0] for row in read_rows(tmp_path / "SST-2.tsv")[1:]] == ["0", "1", "2"]


def test_rewriting_replaces_files_and_leaves_no_temporary_files(tmp_path):
    write_submission({"cola": (["0", "1"], np.array([0, 1]))}, tmp_path)
    write_submission({"cola": (["0"], np.array([1]))}, tmp_path)
    assert read_rows(tmp_path / "CoLA.tsv") == [["index", "prediction"], ["0", "1"]]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["CoLA.tsv", SUBMISSION_ZIP]


@pytest.mark.parametrize(
    ("predictions", "error"),
    [
        ({}, "no task predictions"),
        ({"rte": (["0", "1"], np.array([1, 0])), "mnli": (["0"], np.array([3]))}, "outside"),
        ({"rte": (["0"], np.array([1, 0]))}, "1 ids for 2 predictions"),
        ({"rte": ([], np.array([]))}, "non-empty 1-D"),
        ({"rte": (["0"], np.array([[0.1, 0.9]]))}, "non-empty 1-D"),
        ({"mnli": (["0"], np.array([1])), "MNLI-m": (["0"], np.array([1]))}, "given twice"),
    ],
)
def test_bad_input_raises_and_writes_nothing(tmp_path, predictions, error):
    with pytest.raises(ValueError, match=error):
        write_submission(predictions, tmp_path / "out")
    assert not (tmp_path / "out").exists()
