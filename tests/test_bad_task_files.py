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

NUMERIC = [{"text": f"row {i}", "label": i % 2} for i in range(8)]
ROWS = [{"text": f"row {i} is {'good' if i % 2 else 'bad'}", "label": ["no", "yes"][i % 2]} for i in range(8)]


def task_file(entry: str, top: str = "") -> callable:
    """{work}/tasks.yaml declaring one task (its YAML lines ``entry``) over {work}/rows.jsonl."""

    def setup(work: Path, sources: Sources) -> None:
        (work / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ROWS))
        (work / "numeric.jsonl").write_text("".join(json.dumps(row) + "\n" for row in NUMERIC))
        (work / "tasks.yaml").write_text(f"{top}tasks:\n  - " + entry.strip().replace("\n", "\n    ") + "\n")

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


def bad(expect: str, entry: str, top: str = "") -> Case:
    return Case(on_task_file(), expect, task_file(entry, top))


CASES = {
    # 4. Declared names as paths and as lookups
    "a name with ../": bad("key 'name' is '../escape': give a name of letters", declared("../escape")),
    "a name with a slash": bad("key 'name' is 'a/b'", declared("a/b")),
    "a name with a space": bad("key 'name' is 'my task'", declared("my task")),
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
}


def save_dataset(work: Path) -> None:
    import datasets

    datasets.Dataset.from_list(ROWS).save_to_disk(str(work / "rows-dataset"))


@pytest.mark.parametrize("name", list(LEGAL))
def test_a_legal_task_file_trains_and_evaluates(name, tiny_bert, tmp_path):
    entry = LEGAL[name]  # each its own name: the tasks stay registered in this process
    task_file(entry)(tmp_path, None)
    save_dataset(tmp_path)
    argv = [
        part.format(work=tmp_path, out=tmp_path / "out", cache=tmp_path / "cache", tiny_bert=tiny_bert,
                    fixtures=tmp_path)
        for part in on_task_file("--do_train", "--max_steps", "2")
    ]  # fmt: skip
    run.main(argv)
    results = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    (task,) = [key for key in results if key not in ("average", "glue_average")]
    assert task == entry.split("\n")[0].removeprefix("name: ").lower()
    assert 0 <= results[task]["accuracy"] <= 1
