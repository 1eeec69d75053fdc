"""Task files (issue 23, categories 4 and 5): run.py answers each bad one with one line and exit code 2
before any heavy work, as the bad-input catalogue (tests/test_bad_inputs.py) checks; legal but unusual
ones, a saved Hugging Face dataset among them, train and evaluate.

Category 4: a declared name goes into file names and lookups, so it may not hold a path or be a built-in
task's name or alias. Category 5: every key's type and shape is checked by the one schema
(camtl/tasks/task_file.py), YAML's own booleans included.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bad_input_setups import Sources, assert_refused, run_forked, write
from test_bad_inputs import Case, flags, prepare_case

import run
from camtl.tasks.task_file import load_task_file

NUMERIC = [{"text": f"row {i}", "label": i % 2} for i in range(8)]
ROWS = [{"text": f"row {i} is {'good' if i % 2 else 'bad'}", "label": ["no", "yes"][i % 2]} for i in range(8)]


def task_file(entry: str, top: str = "", *more: str) -> callable:
    """{work}/tasks.yaml declaring one task (its YAML lines ``entry``, then those of ``more`` tasks) over
    the rows in {work}: rows.jsonl, numeric.jsonl, rows.json (one JSON array) and same-id.jsonl (three rows
    with one id)."""

    def setup(work: Path, sources: Sources) -> None:
        (work / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ROWS))
        (work / "numeric.jsonl").write_text("".join(json.dumps(row) + "\n" for row in NUMERIC))
        (work / "rows.json").write_text(json.dumps(ROWS))
        (work / "same-id.jsonl").write_text(
            "".join(json.dumps(row | {"id": "same"}) + "\n" for row in ROWS[:3])
        )
        entries = "".join("  - " + task.strip().replace("\n", "\n    ") + "\n" for task in (entry, *more))
        (work / "tasks.yaml").write_text(f"{top}tasks:\n{entries}")

    return setup


def declared(name: str = "mine", **keys: str) -> str:
    """A task entry in YAML; ``keys`` replace its lines."""
    lines = {
        "name": name,
        "type": "classification",
        "files": "{train: rows.jsonl, dev: rows.jsonl}",
        "fields": "{text_a: text, label: label}",
        "labels": "['no', 'yes']",
    } | keys
    return "\n".join(f"{key}: {value}" for key, value in lines.items() if value is not None)


def on_task_file(*extra: str, tasks: str | None = None) -> list[str]:
    return flags("--do_eval", "--task_file", "{work}/tasks.yaml", *extra, tasks=tasks)


def bad(expect: str, entry: str, top: str = "", *more: str) -> Case:
    return Case(on_task_file(), expect, task_file(entry, top, *more))


def bad_for_training(expect: str, entry: str, *more: str) -> Case:
    """The same answer to a training run (which reads the training files, then trains)."""
    training = on_task_file("--do_train", "--overwrite_output_dir", "--max_steps", "2")
    return Case(training, expect, task_file(entry, "", *more))


def shared(head: str, **keys: str) -> str:
    """A task 'bb' that reads the head of ``head``."""
    return declared("bb", head=head, **keys)


CASES = {
    # 4. Declared names as paths and as lookups
    "a name with ../": bad("key 'name' is '../escape': give a name of letters", declared("../escape")),
    "a name with a slash": bad("key 'name' is 'a/b'", declared("a/b")),
    "a name with a space": bad("key 'name' is 'my task'", declared("my task")),
    "a name too long for a file name": bad(
        "(ASCII, 64 at most: it goes into file names)", declared("t" * 260)
    ),
    "a name of non-ASCII letters": bad(
        "key 'name' is 'tâche': give a name of letters, digits, '-', '_' and '.' (ASCII, 64",
        declared("tâche"),
    ),
    "a built-in task's alias": bad("'sst2' is already a built-in task (an alias of sst-2)", declared("sst2")),
    "a built-in task's name in capitals": bad("'rte' is already a built-in task", declared("RTE")),
    "a head that names no task": bad("key 'head' is 'nothing', no such task", declared(head="nothing")),
    # 5. Values of the wrong type or shape
    "a number as the name": bad("key 'name' is 123", declared("123", labels="['no', 'yes']") + "\nx: 1"),
    "YAML's yes as the name": bad("key 'name' is True", declared("yes")),
    "YAML booleans as labels": bad("quote yes, no, true, false", declared(labels="[no, yes]")),
    "a string for labels": bad("key 'labels' is 'no, yes'", declared(labels="'no, yes'")),
    "a string for files": bad("key 'files' is 'rows.jsonl': map train", declared(files="rows.jsonl")),
    "a number as a file": bad("key 'files.train' is 3", declared(files="{train: 3}")),
    "a string for loss_weight": bad(
        "key 'loss_weight' is '2': give a number >= 0", declared(loss_weight="'2'")
    ),
    "an infinite loss_weight": bad("key 'loss_weight' is inf", declared(loss_weight=".inf")),
    "a boolean loss_weight": bad("key 'loss_weight' is True", declared(loss_weight="yes")),
    "a number as a field": bad("key 'fields.text_a' is 1", declared(fields="{text_a: 1, label: label}")),
    "a list for text_a": bad("key 'fields.text_a' is ['text']", declared(fields="{text_a: [text]}")),
    "a string label_range": bad(
        "key 'label_range' is", declared(type="regression", labels=None, label_range="'0-5'")
    ),
    "a number for metrics": bad("key 'metrics' is 5", declared(metrics="5")),
    "a number for type": bad("key 'type' is 3: choose from classification", declared(type="3")),
    "an unknown format": bad("key 'format' is 'xml': choose from jsonl", declared(format="xml")),
    "a number for data_dir": bad("key 'data_dir' is 5", declared(), top="data_dir: 5\n"),
    "a task that is a list": bad("task 1 is not a mapping of keys", "[name, mine]"),
    "a mapping for tasks": Case(
        on_task_file(), "non-empty list under 'tasks'", write("tasks.yaml", "tasks: {a: 1}")
    ),
    "label_range on classification": bad("key 'label_range' does not apply", declared(label_range="[0, 1]")),
    "an empty list of metrics": bad(
        "key 'metrics' is []: list one metric name or more", declared(metrics="[]")
    ),
    "both metric and metrics": bad(
        "task 'mine': keys 'metric' and 'metrics' are both given: keep one",
        declared(metric="f1", metrics="[accuracy]"),
    ),
    "a field that classification does not read": bad(
        "key 'fields.tags' does not apply to classification: drop it",
        declared(fields="{text_a: text, label: label, tags: foo}"),
    ),
    "a field that masked_lm does not read": bad(
        "key 'fields.text_a' does not apply to masked_lm: drop it (masked_lm reads text)",
        declared(type="masked_lm", labels=None, fields="{text_a: text}"),
    ),
    "a key given twice in one task": bad(
        "tasks.yaml:7: key 'labels' is given twice: keep one", declared() + "\nlabels: ['a', 'b']"
    ),
    # 6. Names that eval_results.json keeps for its own summary
    "the name average": bad("key 'name' is 'average', which eval_results.json keeps", declared("average")),
    "the name glue_average": bad("key 'name' is 'glue_average', which", declared("glue_average")),
    "the name Glue_Average_With_WNLI": bad(
        "key 'name' is 'glue_average_with_wnli', which", declared("Glue_Average_With_WNLI")
    ),
    # 7. Heads: one that has a head of its own, of the same type and labels
    "a cycle of heads": bad(
        "tasks 'aa' and 'bb' name each other under key 'head', a cycle",
        declared("aa", head="bb"),
        "",
        shared("aa"),
    ),  # fmt: skip
    "a head that reads another head": bad(
        "task 'bb': key 'head' is 'cc', which reads the head of 'aa' itself: write head: aa",
        declared("aa"),
        "",
        shared("cc"),
        declared("cc", head="aa"),
    ),  # fmt: skip
    "a built-in head that reads another head": bad(
        "key 'head' is 'snli', which reads the head of 'mnli'", shared("snli")
    ),  # fmt: skip
    "a regression task on a classification head": bad(
        "task 'reg': key 'head' is 'cls', a classification task, whose head cannot score a regression task",
        declared("cls", labels="['no', 'yes', 'maybe']"),
        "",
        declared("reg", type="regression", labels=None, label_range="[0, 5]", head="cls"),
    ),  # fmt: skip
    "a head with other labels": bad(
        "task 'bb': key 'head' is 'aa', whose labels are ['no', 'yes', 'maybe'], not this task's",
        declared("aa", labels="['no', 'yes', 'maybe']"),
        "",
        shared("aa"),
    ),  # fmt: skip
    "a shared head's task with a train file of its own": bad_for_training(
        "task 'bb' has a train file, but its key 'head' makes it read the head of 'aa'",
        declared("aa"),
        shared("aa"),
    ),  # fmt: skip
    # 8. Labels
    "a label listed twice": bad(
        "key 'labels' lists 'no' twice: list each label once", declared(labels="['no', 'yes', 'no']")
    ),  # fmt: skip
    "label_names longer than labels": bad(
        "key 'label_names' has 3 names for 2 labels", declared(label_names="['no', 'yes', 'maybe']")
    ),
    "label_names with a name that is no label": bad(
        "key 'label_names' has 'maybe', which is not in labels", declared(label_names="['no', 'maybe']")
    ),
    "binary f1 on three labels": bad(
        "metric 'f1' is binary (the F1 of the second label) and this task has 3 labels: use macro_f1",
        declared(labels="['no', 'yes', 'maybe']", metric="f1"),
    ),
    "acc_and_f1 on three labels": bad(
        "metric 'acc_and_f1' is binary",
        declared(labels="['no', 'yes', 'maybe']", metrics="[accuracy, acc_and_f1]"),
    ),
    # 9. Rows that do not fit the fields
    "a label field that no training row has": bad_for_training(
        "rows.jsonl has no usable training row: all 8 are malformed, the first (",
        declared(fields="{text_a: text, label: lbl}"),
    ),
    "a template field that no training row has": bad_for_training(
        "rows.jsonl:1) has no field 'nosuch'", declared(fields="{text_a: '{text} / {nosuch}', label: label}")
    ),
    "ids that repeat in a dev file": bad(
        "same-id.jsonl:2 has id 'same', as line 1 does: give each row its own id",
        declared(
            files="{train: rows.jsonl, dev: same-id.jsonl}", fields="{text_a: text, label: label, id: id}"
        ),
    ),
    # 10. The task file itself
    "a directory as the task file": Case(
        flags("--do_eval", "--task_file", "{work}", tasks=None),
        "is a directory: pass the YAML or JSON task file",
    ),
    "a task file in UTF-16": Case(
        on_task_file(),
        "tasks.yaml is not valid UTF-8 (invalid start byte): save the file as UTF-8",
        lambda work, sources: (work / "tasks.yaml").write_bytes(f"tasks:\n  - {declared()}".encode("utf-16")),
    ),
    "an empty task file": Case(
        on_task_file(),
        "tasks.yaml is empty: declare your tasks under 'tasks' (python -m camtl.tasks.task_file",
        write("tasks.yaml", ""),
    ),  # fmt: skip
    "--do_predict alone, no task with a test file": Case(
        flags("--do_predict", "--task_file", "{work}/tasks.yaml", tasks=None),
        "--do_predict: no test file for mine",
        task_file(declared()),
    ),
    "a missing dev file of a declared task": bad(
        "fix files.dev of task 'mine' in --task_file",
        declared(files="{train: rows.jsonl, dev: missing.jsonl}"),
    ),
}


@pytest.fixture(scope="module")
def answers(tiny_bert, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("bad-task-files")
    sources = Sources(checkpoint=root, trained=root)  # no case needs them
    works = {name: root / f"case-{index}" for index, name in enumerate(CASES)}
    commands = {name: prepare_case(CASES[name], works[name], tiny_bert, sources)[0] for name in CASES}
    results = run_forked(commands, root / "logs")
    return {name: (works[name], results[name]) for name in CASES}


@pytest.mark.parametrize("name", list(CASES))
def test_a_bad_task_file_gets_one_line_and_exit_code_2(name, answers):
    assert_refused(*answers[name], CASES[name].expect)


# Legal but unusual task files: each trains two steps and evaluates.
LEGAL = {
    "numeric labels": declared(
        "numeric", labels="[0, 1]", files="{train: numeric.jsonl, dev: numeric.jsonl}"
    ),
    "a name in capitals, with a dot": declared("My.Task"),
    "a quoted yes as a label": declared("quoted", labels="['no', 'yes']"),
    "an integer loss_weight": declared("weighted", loss_weight="2"),
    "a saved Hugging Face dataset": declared("saved", files="{train: rows-dataset, dev: rows-dataset}"),
    "a file that is one JSON array": declared("array", files="{train: rows.json, dev: rows.json}"),
}


def save_dataset(work: Path) -> None:
    import datasets

    datasets.Dataset.from_list(ROWS).save_to_disk(str(work / "rows-dataset"))


def train_and_evaluate(work: Path, tiny_bert: Path) -> dict:
    """Train two steps on {work}/tasks.yaml's tasks (no --tasks), evaluate: eval_results.json."""
    argv = [
        part.format(work=work, out=work / "out", cache=work / "cache", tiny_bert=tiny_bert, fixtures=work)
        for part in on_task_file("--do_train", "--max_steps", "2")
    ]
    run.main(argv)
    return json.loads((work / "out" / "eval_results.json").read_text())


@pytest.mark.parametrize("name", list(LEGAL))
def test_a_legal_task_file_trains_and_evaluates(name, tiny_bert, tmp_path):
    entry = LEGAL[name]  # each its own name: the tasks stay registered in this process
    task_file(entry)(tmp_path, None)
    save_dataset(tmp_path)
    results = train_and_evaluate(tmp_path, tiny_bert)
    (task,) = [key for key in results if key not in ("average", "glue_average")]
    assert task == entry.split("\n")[0].removeprefix("name: ").lower()
    assert 0 <= results[task]["accuracy"] <= 1


def test_a_task_that_reads_another_head_is_evaluated_through_it_by_default(tiny_bert, tmp_path):
    # 'reader' has dev rows only and its labels in another order: the 'owner' head scores it, by label name
    reader = declared("reader", head="owner", files="{dev: rows.jsonl}", labels="['yes', 'no']")
    task_file(declared("owner"), "", reader)(tmp_path, None)
    results = train_and_evaluate(tmp_path, tiny_bert)
    assert {"owner", "reader"} <= set(results)
    assert results["reader"]["accuracy"] == results["owner"]["accuracy"]  # the same rows, the same head


@pytest.mark.parametrize(
    ("top", "files"), [("data_dir: ~/data\n", "{dev: rows.jsonl}"), ("", "{dev: ~/data/rows.jsonl}")]
)
def test_a_tilde_in_data_dir_or_a_file_is_the_home_folder(tmp_path, monkeypatch, top, files):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "data").mkdir(parents=True)
    task_file(declared(files=files), top)(tmp_path / "home" / "data", None)
    (task,) = load_task_file(tmp_path / "home" / "data" / "tasks.yaml")
    assert task.dev.filename == str(tmp_path / "home" / "data" / "rows.jsonl")
