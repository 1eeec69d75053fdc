"""Task files: declared tasks read like built-in ones; every bad key is one UsageError naming it."""

import json
from pathlib import Path

import pytest

from camtl.data.sources import task_data_dir
from camtl.data.splits import read_split
from camtl.errors import UsageError
from camtl.tasks import TASKS, Task, register
from camtl.tasks.plan import plan_tasks
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


def test_label_names_order_the_labels(tmp_path):
    """``label_names`` maps the raw values 0, 1, ... of the files onto the labels: each label once."""
    (tmp_path / "train.jsonl").write_text('{"text": "a", "label": 0}\n{"text": "b", "label": "1"}\n')
    entry = good(name="ordered", labels=["no", "yes"], label_names=["yes", "no"])
    register(load_task_file(write(tmp_path, [entry]))[0])
    assert read_split(tmp_path, "ordered", "train").labels == [1.0, 0.0]  # 0 stands for 'yes'
    for label_names, message in (
        (["no", "yes", "maybe"], "has 3 names for 2 labels"),
        (["no"], "has 1 names for 2 labels"),
        (["no", "maybe"], "has 'maybe', which is not in labels"),
        (["no", "no"], "lists 'no' twice"),
    ):
        with pytest.raises(UsageError, match=f"task 'mine': key 'label_names' {message}"):
            load_task_file(write(tmp_path, [good(label_names=label_names)]))


def test_the_first_malformed_training_row_is_named(tmp_path, caplog):
    (tmp_path / "train.jsonl").write_text('{"text": "a", "label": "no"}\n{"text": "b"}\n{"txt": "c"}\n')
    register(load_task_file(write(tmp_path, [good(name="half-bad")]))[0])
    assert read_split(tmp_path, "half-bad", "train").skipped == 2
    assert (
        f"skipped 2 malformed training rows (the first, {tmp_path / 'train.jsonl'}:2, has no field"
        in caplog.text
    )
    (tmp_path / "train.jsonl").write_text('{"text": "b"}\n{"text": "c", "lbl": "no"}\n')
    with pytest.raises(UsageError, match=r"no usable training row: all 2 are malformed, the first \(.*:1\)"):
        read_split(tmp_path, "half-bad", "train")


def test_a_json_array_file_is_read_as_rows_with_their_lines(tmp_path):
    rows = [{"text": "a", "label": "no"}, {"text": "b", "label": "maybe"}]
    (tmp_path / "dev.json").write_text(json.dumps(rows, indent=2))  # the second object starts on line 6
    register(load_task_file(write(tmp_path, [good(name="array-dev", files={"dev": "dev.json"})]))[0])
    with pytest.raises(UsageError, match=r"dev.json:6 has label 'maybe'"):
        read_split(tmp_path, "array-dev", "dev")
    (tmp_path / "dev.json").write_text(json.dumps(rows[:1] * 3))
    assert read_split(tmp_path, "array-dev", "dev").text_a == ["a", "a", "a"]


def test_ids_repeated_in_a_test_file_are_refused_and_training_ids_may_repeat(tmp_path):
    rows = "".join(
        json.dumps({"text": t, "label": "no", "id": i}) + "\n" for t, i in [("a", 1), ("b", 2), ("c", 1)]
    )
    (tmp_path / "rows.jsonl").write_text(rows)
    files = {"train": "rows.jsonl", "test": "rows.jsonl"}
    entry = good(name="ids", files=files, fields={"text_a": "text", "label": "label", "id": "id"})
    register(load_task_file(write(tmp_path, [entry]))[0])
    assert read_split(tmp_path, "ids", "train").ids == ["1", "2", "1"]
    with pytest.raises(
        UsageError, match=r"rows.jsonl:3 has id '1', as line 1 does: give each row its own id"
    ):
        read_split(tmp_path, "ids", "test")


def saved(task: Task) -> dict:
    """The config of a checkpoint trained on ``task`` alone."""
    return {"tasks": [task.name], "task_specs": {task.name: task.to_dict()}}


def test_a_task_that_reads_another_head_is_in_the_default_plan(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"text": "a", "label": "no"}\n')
    reader = good(name="plan-reader", head="plan-owner", files={"dev": "train.jsonl"})
    owner = good(name="plan-owner", files={"train": "train.jsonl", "dev": "train.jsonl"})
    plan = plan_tasks(None, str(write(tmp_path, [owner, reader])), {})
    assert (plan.trained, plan.evaluated) == (["plan-owner"], ["plan-owner", "plan-reader"])
    alone = write(tmp_path, [good(name="plan-alone", head="rte", labels=["entailment", "not_entailment"])])
    with pytest.raises(
        UsageError, match=r"every task reads the head of another task \(rte\).*--tasks rte plan-alone"
    ):
        plan_tasks(None, str(alone), {})


def test_a_checkpoint_s_task_redeclared_with_other_labels_names_the_task_file(tmp_path):
    (tmp_path / "trained").mkdir()
    trained = load_task_file(write(tmp_path / "trained", [good(name="relabelled")]))[0]
    path = write(tmp_path, [good(name="relabelled", labels=["yes", "no"])])
    with pytest.raises(UsageError) as error:
        plan_tasks(None, str(path), saved(trained), training=False)
    assert str(error.value) == (
        "the checkpoint's task 'relabelled' (classification, labels ['no', 'yes']) differs from task"
        f" 'relabelled' of --task_file {path} (classification, labels ['yes', 'no']): drop --task_file (the"
        " checkpoint carries its tasks), or restore the labels the checkpoint was trained with"
    )
