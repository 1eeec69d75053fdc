"""Task files: declared tasks read like built-in ones; every bad key is one UsageError naming it."""

import json
from pathlib import Path

import pytest

from camtl.data.sources import task_data_dir
from camtl.data.splits import read_split
from camtl.errors import UsageError
from camtl.tasks import TASKS, register
from camtl.tasks.task_file import load_task_file

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "superglue_tasks.yaml"


def test_the_example_task_file_reads_like_the_built_in_tasks(shared_data):
    tasks = {task.name: task for task in load_task_file(EXAMPLE)}
    assert set(tasks) == {"cb-file", "copa-file", "wic-file"}
    for task in tasks.values():
        register(task)
    for declared, built_in in (("cb-file", "cb"), ("copa-file", "copa"), ("wic-file", "wic")):
        for split in ("train", "dev"):
            mine, theirs = read_split(shared_data, declared, split), read_split(shared_data, built_in, split)
            assert (mine.text_a, mine.text_b, mine.labels, mine.choices) == (
                theirs.text_a, theirs.text_b, theirs.labels, theirs.choices
            )  # fmt: skip
    assert TASKS["copa-file"].type == "multiple_choice" and TASKS["cb-file"].metrics == (
        "accuracy",
        "macro_f1",
    )


def write(tmp_path: Path, tasks, **top) -> Path:
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps({"tasks": tasks, **top}))
    return path


def good(**overrides) -> dict:
    return {"name": "mine", "type": "classification", "files": {"train": "train.jsonl"},
            "fields": {"text_a": "text", "label": "label"}, "labels": ["no", "yes"], **overrides}  # fmt: skip


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (good(type="clasification"), "key 'type' is 'clasification': choose from classification"),
        (good(name=""), "key 'name' is missing"),
        (good(labels=["yes"]), "key 'labels' is \\['yes'\\]: list at least two distinct labels"),
        (good(metric="mcc_score"), "metric 'mcc_score' does not apply to classification"),
        (good(files={"training": "x.jsonl"}), "unknown key 'files.training': use dev, test, train"),
        (good(files={"train": "x.parquet"}), "the format of x.parquet is unknown"),
        (good(fields={"text_a": "t", "lable": "l"}), "unknown key 'fields.lable': use choices, id, label"),
        (good(loss_weight=-1), "key 'loss_weight' is -1: give a number >= 0"),
        (good(colour="red"), "unknown key 'colour'"),
        (good(type="regression", labels=None), "key 'label_range' is None: give \\[low, high\\]"),
        (good(type="multiple_choice"), "fields has no 'choices'"),
    ],
)
def test_a_bad_key_is_one_line_naming_it(tmp_path, entry, message):
    with pytest.raises(UsageError, match=message) as error:
        load_task_file(write(tmp_path, [entry]))
    assert "\n" not in str(error.value)
    assert "task 'mine'" in str(error.value) or "task 1" in str(error.value)


def test_file_level_problems_are_one_line(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_task_file(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("tasks: [\n  - name: x")
    with pytest.raises(UsageError, match="cannot be read"):
        load_task_file(tmp_path / "broken.yaml")
    with pytest.raises(UsageError, match="declared twice"):
        load_task_file(write(tmp_path, [good(), good()]))
    with pytest.raises(UsageError, match="non-empty list under 'tasks'"):
        load_task_file(write(tmp_path, []))


def test_a_declared_task_may_not_redefine_a_built_in_one(tmp_path):
    with pytest.raises(UsageError, match="already a built-in task"):
        register(load_task_file(write(tmp_path, [good(name="rte")]))[0])


def test_bad_rows_of_declared_files_name_the_file_and_line(tmp_path):
    (tmp_path / "train.jsonl").write_text(
        '{"text": "a", "label": "yes"}\n{"text": "b"}\n{"text": "c", "label": "no"}\n'
    )
    (tmp_path / "dev.jsonl").write_text('{"text": "a", "label": "maybe"}\n')
    task = load_task_file(
        write(tmp_path, [good(name="rows", files={"train": "train.jsonl", "dev": "dev.jsonl"})])
    )[0]
    register(task)
    train = read_split(tmp_path, "rows", "train")
    assert train.text_a == ["a", "c"] and train.skipped == 1  # training rows are skipped and counted
    with pytest.raises(UsageError, match=r"dev.jsonl:1 has label 'maybe', expected one of \['no', 'yes'\]"):
        read_split(tmp_path, "rows", "dev")


def test_each_task_is_found_in_the_data_folder_that_holds_it(shared_data, shared_glue, tmp_path):
    folders = [shared_glue, shared_data]
    assert task_data_dir("rte", folders) == shared_glue
    assert task_data_dir("copa", folders) == shared_data
    with pytest.raises(UsageError, match="no --data_dir holds its folder WNUT17"):
        task_data_dir("wnut17", [shared_glue, tmp_path])
    (tmp_path / "RTE").mkdir()
    with pytest.raises(UsageError, match="both .* hold RTE: keep one of them"):
        task_data_dir("rte", [shared_glue, tmp_path])
