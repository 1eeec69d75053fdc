"""End-to-end runs of run.py with a tiny random BERT over the GLUE fixtures."""

import csv
import json
import math
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from camtl.tasks import TASKS

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "glue"
ALL_SUBMISSION_FILES = {task.submission_file for task in TASKS.values() if task.glue}


def run(*flags, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "run.py", *map(str, flags)], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def common_flags(tiny_bert, tmp_path, output="out"):
    return [
        "--model_name_or_path", tiny_bert, "--layout", "base", "--data_dir", FIXTURES,
        "--output_dir", tmp_path / output, "--features_cache_dir", tmp_path / "cache",
        "--max_seq_length", 32, "--per_device_train_batch_size", 4, "--per_device_eval_batch_size", 5,
        "--learning_rate", 1e-3, "--logging_steps", 5, "--seed", 7,
    ]  # fmt: skip


def read_submission(path: Path) -> list[list[str]]:
    with path.open() as f:
        return list(csv.reader(f, delimiter="\t"))


def test_train_eval_predict_writes_every_output(tiny_bert, tmp_path):
    result = run(
        *common_flags(tiny_bert, tmp_path),
        "--do_train", "--do_eval", "--do_predict", "--max_steps", 12, "--save_steps", 6,
        "--use_mt_uncertainty", "--evaluate_during_training",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "out"
    results = json.loads((out / "eval_results.json").read_text())
    expected_tasks = {"cola", "sst-2", "mrpc", "sts-b", "qqp", "mnli", "mnli-mm", "qnli", "rte", "wnli"}
    assert expected_tasks <= set(results)
    scores = [results[t]["score"] for t in expected_tasks - {"wnli"}]
    assert results["glue_average"] == pytest.approx(sum(scores) / len(scores))
    history = json.loads((out / "eval_history.json").read_text())
    assert [e["step"] for e in history["evaluations"]] == [5, 10, 12]
    best = max(history["evaluations"], key=lambda e: e["results"]["glue_average"])
    assert history["best"]["step"] == best["step"]
    # Submission files: official names, header, one row per test example, GLUE label spelling.
    with zipfile.ZipFile(out / "glue_submission.zip") as archive:
        assert set(archive.namelist()) == ALL_SUBMISSION_FILES
    rows = read_submission(out / "MNLI-m.tsv")
    assert rows[0] == ["index", "prediction"] and len(rows) == 11
    assert {r[1] for r in rows[1:]} <= {"entailment", "neutral", "contradiction"}
    assert {r[1] for r in read_submission(out / "CoLA.tsv")[1:]} <= {"0", "1"}
    assert all(0 <= float(r[1]) <= 5 for r in read_submission(out / "STS-B.tsv")[1:])
    assert {r[1] for r in read_submission(out / "AX.tsv")[1:]} <= {"entailment", "neutral", "contradiction"}
    # Checkpoints are reloadable camtl models; sampling was logged.
    assert (out / "checkpoint-6" / "model.safetensors").is_file()
    summary = json.loads((out / "sampling_summary.json").read_text())
    assert (
        sum(summary[f"sampling/{t}/examples_drawn"] for t in TASKS if TASKS[t].head == t and TASKS[t].glue)
        == 12 * 4
    )
    assert list((out / "runs").rglob("events.out.tfevents.*"))
    train_metrics = json.loads((out / "train_results.json").read_text())
    assert train_metrics["train_runtime"] > 0 and math.isfinite(train_metrics["train_loss"])

    # Predict-only from the checkpoint gives the same predictions as the run that saved it.
    again = run(
        "--model_name_or_path", out, "--data_dir", FIXTURES, "--output_dir", tmp_path / "predict-only",
        "--features_cache_dir", tmp_path / "cache", "--max_seq_length", 32, "--do_predict",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    for name in ALL_SUBMISSION_FILES:
        assert read_submission(tmp_path / "predict-only" / name) == read_submission(out / name)


def test_json_config_and_legacy_flags(tiny_bert, tmp_path):
    flags = common_flags(tiny_bert, tmp_path)
    config = {flags[i].lstrip("-"): flags[i + 1] for i in range(0, len(flags), 2)}
    config = {key: str(value) if isinstance(value, Path) else value for key, value in config.items()}
    del config["per_device_train_batch_size"]  # given with its old name below
    config.update(
        do_train=True, do_eval=True, max_steps=3, tasks=["rte", "SST-2"], per_gpu_train_batch_size=2,
        fp16_opt_level="O1", task_sampling="sequential", save_steps=100,
    )  # fmt: skip
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    result = run(config_file)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "per_device_train_batch_size" in result.stderr and "torch.amp" in result.stderr
    results = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    assert set(results) == {"sst-2", "rte", "glue_average"}
    summary = json.loads((tmp_path / "out" / "sampling_summary.json").read_text())
    assert summary["sampling/rte/examples_drawn"] + summary["sampling/sst-2/examples_drawn"] == 3 * 2


def test_same_seed_same_model_and_scores(tiny_bert, tmp_path):
    """The conditional modules and heads are initialised from --seed: two runs score identically."""
    flags = common_flags(tiny_bert, tmp_path)
    outputs = []
    for name in ("first", "second"):
        flags[flags.index("--output_dir") + 1] = tmp_path / name
        result = run(*flags, "--do_eval", "--tasks", "rte", "sts-b")
        assert result.returncode == 0, result.stderr[-3000:]
        outputs.append(json.loads((tmp_path / name / "eval_results.json").read_text()))
    assert outputs[0] == outputs[1]
