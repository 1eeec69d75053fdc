"""The four multi-task scenarios of docs/tasks.md on the tiny model: train, evaluate, predict, reload.

GLUE tasks read the fixtures (tests/fixtures/glue), the others the real files of ../shared/data (CI has
them); every split is capped so that a scenario takes seconds.
"""

import json
from pathlib import Path

import pytest

import run

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "glue"
TASK_FILE = REPO / "examples" / "superglue_tasks.yaml"
GLUE = ["cola", "sst-2", "mrpc", "sts-b", "qqp", "mnli", "qnli", "rte", "wnli"]
SCENARIOS = {
    "sts-b + rte + commonsenseqa": ["--tasks", "sts-b", "rte", "commonsenseqa"],
    "sst-2 + wikitext2-mlm, weighted": ["--tasks", "sst-2", "wikitext2-mlm",
                                        "--task_weights", "wikitext2-mlm=0.5"],
    "cb + copa + wic from a task file": ["--task_file", str(TASK_FILE)],
    "glue + cb + copa + wic + wnut17 with MT-U": ["--tasks", *GLUE, "cb", "copa", "wic", "wnut17",
                                                  "--use_mt_uncertainty"],
}  # fmt: skip


def flags(tiny_bert: Path, shared_data: Path, tmp_path: Path, output: str) -> list[str]:
    return [
        "--model_name_or_path", str(tiny_bert), "--layout", "base",
        "--data_dir", str(FIXTURES), str(shared_data), "--output_dir", str(tmp_path / output),
        "--features_cache_dir", str(tmp_path / "cache"), "--max_seq_length", "48",
        "--per_device_train_batch_size", "4", "--learning_rate", "1e-3", "--max_steps", "3",
        "--max_train_samples", "12", "--max_eval_samples", "8", "--max_predict_samples", "6",
        "--logging_steps", "3", "--save_steps", "3", "--report_to", "none", "--seed", "5",
    ]  # fmt: skip


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_scenario_trains_evaluates_predicts_and_reloads(scenario, tiny_bert, shared_data, tmp_path):
    base = flags(tiny_bert, shared_data, tmp_path, "run")
    trainer = run.main([*base, *SCENARIOS[scenario], "--do_train", "--do_eval", "--do_predict"])
    tasks = trainer.model.config.tasks
    results = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert set(tasks) <= set(results) and -1 <= results.get("average", results.get("glue_average")) <= 1
    written = {path.stem for path in (tmp_path / "run" / "predictions").glob("*.jsonl")}
    assert written == {
        t for t in tasks if t in ("commonsenseqa", "cb", "cb-file", "wnut17")
    }  # the ones with a test split
    # Predict-only from the saved run, with no --tasks and no --task_file: the checkpoint carries its tasks.
    run.main([
        "--model_name_or_path", str(tmp_path / "run"), "--data_dir", str(FIXTURES), str(shared_data),
        "--output_dir", str(tmp_path / "reloaded"), "--features_cache_dir", str(tmp_path / "cache"),
        "--max_eval_samples", "8", "--max_predict_samples", "6", "--report_to", "none",
        "--do_eval", "--do_predict",
    ])  # fmt: skip
    again = json.loads((tmp_path / "reloaded" / "eval_results.json").read_text())
    assert again == results
    for task in written:
        first = (tmp_path / "run" / "predictions" / f"{task}.jsonl").read_text()
        assert (tmp_path / "reloaded" / "predictions" / f"{task}.jsonl").read_text() == first


def test_the_scenario_program_sets_every_task_beside_its_baselines(tiny_bert, shared_data, tmp_path):
    from camtl.bench import scenarios

    common = tuple(flags(tiny_bert, shared_data, tmp_path, "unused")[:2]) + (
        "--layout", "base", "--features_cache_dir", str(tmp_path / "cache"), "--max_seq_length", "48",
        "--per_device_train_batch_size", "4", "--learning_rate", "1e-3", "--max_train_samples", "12",
        "--max_eval_samples", "8", "--max_predict_samples", "6", "--save_steps", "2", "--report_to", "none",
        "--seed", "5", "--overwrite_output_dir", "--do_train", "--do_eval", "--do_predict",
    )  # fmt: skip
    record = scenarios.run_scenario(
        "stsb-rte-csqa", 2, "fp32", tmp_path / "no-probe.json", common,
        (str(FIXTURES), str(shared_data)), tmp_path / "work",
    )  # fmt: skip
    rows = {r["task"]: r for r in record["baselines"]}
    assert set(rows) == {"sts-b", "rte", "commonsenseqa"} and record["reload_identical"]
    assert rows["sts-b"]["majority"] is None  # a regression has no majority class
    rte = [line.split("\t")[-1] for line in (FIXTURES / "RTE" / "dev.tsv").read_text().splitlines()[1:9]]
    assert rows["rte"]["majority"] == pytest.approx(max(map(rte.count, set(rte))) / 8)  # its first 8 rows
    choices = 5  # CommonsenseQA: the most common gold choice, on the same 8 rows
    assert 1 / choices <= rows["commonsenseqa"]["majority"] <= 1
    for row in rows.values():
        bars = [b for b in (row["majority"], row["floor"]) if b is not None]
        assert row["learned"] == (all(row["score"] > b for b in bars) if bars else None)
    text = scenarios.format_record(record)
    assert "above the majority class and the floor (where one exists):" in text
    assert "--max_steps 2 --precision fp32" in record["command"]


def test_scenario_steps_are_checked_in_one_line():
    from camtl.bench import scenarios
    from camtl.errors import UsageError

    assert scenarios.parse_steps(["stsb-rte-csqa=800"]) == {"stsb-rte-csqa": 800}
    for bad in ("stsb-rte-csqa=0", "nope=5", "stsb-rte-csqa"):
        with pytest.raises(UsageError, match="give NAME=N with N >= 1"):
            scenarios.parse_steps([bad])
