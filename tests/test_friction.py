"""Needless friction (issue category 11): runs that must work without a flag they do not need, and
transformers notices that ask nothing of the user left out of their output.

- a task file that gives its tasks their folder (``data_dir:``) needs no --data_dir;
- --do_eval --tasks rte on a checkpoint of rte and sst-2 evaluates rte alone;
- neither "You are using a model of type camtl to instantiate a model of type ..." (AutoTokenizer
  reading a camtl checkpoint's config) nor the Trainer's PAD/BOS/EOS alignment notice is printed, nor
  transformers' "Writing model shards" bar at each save (it tangled with the training bar).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bad_input_setups import run_forked
from test_bad_inputs import checkpoint as checkpoint  # a fixture: a camtl checkpoint of rte and sst-2

from camtl.data.sources import task_data_dir
from camtl.errors import UsageError

ROWS = [{"text": f"row {i} is {'good' if i % 2 else 'bad'}", "label": ["no", "yes"][i % 2]} for i in range(8)]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "glue"
NOTICES = ("to instantiate a model of type", "PAD/BOS/EOS", "Writing model shards")


def common(out: Path, cache: Path) -> list[str]:
    return ["--output_dir", str(out), "--features_cache_dir", str(cache), "--max_seq_length", "32",
            "--report_to", "none", "--max_steps", "2"]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tiny_bert, checkpoint, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("friction")
    (root / "tasks" / "data").mkdir(parents=True)
    (root / "tasks" / "data" / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    (root / "tasks" / "tasks.yaml").write_text(
        "data_dir: data\ntasks:\n  - name: mine\n    type: classification\n"
        "    files: {train: rows.jsonl, dev: rows.jsonl}\n    fields: {text_a: text, label: label}\n"
        "    labels: ['no', 'yes']\n"
    )
    commands = {
        "task file without --data_dir": [
            "--model_name_or_path", str(tiny_bert), "--layout", "base", "--task_file",
            str(root / "tasks" / "tasks.yaml"), "--do_train", "--do_eval",
            *common(root / "task-file-run", root / "cache"),
        ],
        "a subset of the checkpoint's tasks": [
            "--model_name_or_path", str(checkpoint), "--data_dir", str(FIXTURES),
            "--tasks", "rte", "--do_eval", *common(root / "subset", root / "cache"),
        ],
        "training with a checkpoint at every step": [
            "--model_name_or_path", str(tiny_bert), "--layout", "base", "--data_dir", str(FIXTURES),
            "--tasks", "rte", "--do_train", "--save_steps", "1", *common(root / "saves", root / "cache"),
        ],
    }  # fmt: skip
    results = run_forked(commands, root / "logs")
    return {"root": root, **results}


def test_a_task_file_with_its_own_data_dir_needs_no_data_dir(runs):
    result = runs["task file without --data_dir"]
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((runs["root"] / "task-file-run" / "eval_results.json").read_text())
    assert set(results) == {"mine", "average"}


def test_evaluating_a_subset_of_a_checkpoints_tasks_works(runs):
    result = runs["a subset of the checkpoint's tasks"]
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((runs["root"] / "subset" / "eval_results.json").read_text())
    assert set(results) == {"rte", "glue_average"}


@pytest.mark.parametrize(
    "name",
    [
        "task file without --data_dir",
        "a subset of the checkpoint's tasks",
        "training with a checkpoint at every step",
    ],
)
def test_transformers_notices_that_ask_nothing_are_not_printed(runs, name):
    assert runs[name].returncode == 0, runs[name].stderr[-3000:]
    output = runs[name].stdout + runs[name].stderr
    assert not [line for line in output.splitlines() if any(notice in line for notice in NOTICES)]


def test_a_built_in_task_without_data_dir_is_refused_naming_the_flag():
    with pytest.raises(UsageError, match=r"^task 'rte' is read from a data folder: pass --data_dir"):
        task_data_dir("rte", None)
