"""The parity program: the main job in bf16 against fp32 from the same seed and a second fp32 seed."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from camtl.bench import parity
from camtl.errors import UsageError

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {"max_steps": 1400, "learning_rate": 1e-4, "sampling_temperature": 5.0}


def finished_run(root: Path, name: str, precision: str, seed: int, scores: dict, **changed) -> Path:
    run_dir = root / name
    (run_dir / "checkpoint-1400").mkdir(parents=True)
    settings = {**SETTINGS, "precision": precision, "bf16": precision == "bf16", "seed": seed, **changed}
    (run_dir / "checkpoint-1400" / "run_settings.json").write_text(json.dumps(settings))
    results = {task: {"score": score} for task, score in scores.items()}
    (run_dir / "eval_results.json").write_text(
        json.dumps({**results, "glue_average": sum(scores.values()) / 2})
    )
    return run_dir


def three_runs(tmp_path: Path, **changed) -> dict[str, Path]:
    return {
        "bf16": finished_run(tmp_path, "bf16", "bf16", 12, {"cola": 0.20, "rte": 0.60}, **changed),
        "fp32": finished_run(tmp_path, "fp32", "fp32", 12, {"cola": 0.18, "rte": 0.55}),
        "fp32_other_seed": finished_run(tmp_path, "fp32-13", "fp32", 13, {"cola": 0.10, "rte": 0.56}),
    }


def test_the_precision_difference_is_set_against_the_seed_difference(tmp_path):
    runs = {name: parity.load_run(path) for name, path in three_runs(tmp_path).items()}
    parity.check_runs(runs)
    rows = {r["task"]: r for r in parity.parity_rows(*(results for results, _ in runs.values()))}
    assert set(rows) == {"cola", "rte", "glue_average"}  # tasks a run did not score are left out
    assert rows["cola"]["precision_difference"] == pytest.approx(0.02)
    assert rows["cola"]["seed_difference"] == pytest.approx(0.08) and rows["cola"]["within_seed_difference"]
    assert (
        rows["rte"]["precision_difference"] == pytest.approx(0.05)
        and not rows["rte"]["within_seed_difference"]
    )
    text = parity.format_parity(list(rows.values()), (12, 13), "python -m camtl.bench parity ...")
    assert "| rte | 60.00 | 55.00 | 56.00 | +5.00 | -1.00 | **no** |" in text
    assert "within the seed difference on 1 of 2 dev tasks" in text
    assert "Training time" not in text  # the runs' folders hold no train_results.json


def test_the_report_gives_each_runs_training_time_from_its_train_results(tmp_path):
    runs = three_runs(tmp_path)
    for path, seconds in zip(runs.values(), (724.0, 1258.0, 1240.0), strict=True):
        (path / "train_results.json").write_text(json.dumps({"train_runtime": seconds, "epoch": 1.0}))
    runtimes = {name: parity.train_runtime(path) for name, path in runs.items()}
    text = parity.format_parity([], (12, 13), "python -m camtl.bench parity ...", runtimes)
    assert "bf16 724 s, fp32 1,258 s (1.74x the bf16 run), fp32 other seed 1,240 s." in text
    resumed = {"train_runtime": 300.0, "resumed_from_checkpoint": "checkpoint-1000"}
    (runs["fp32"] / "train_results.json").write_text(json.dumps(resumed))
    assert parity.train_runtime(runs["fp32"]) is None  # its time is the last part's, not the run's


@pytest.mark.parametrize(
    ("swap", "message"),
    [
        ({"bf16": "fp32"}, "--bf16 ran in fp32, not bf16"),
        ({"fp32_other_seed": "fp32"}, "seeds 12, 12, 12"),
    ],
)
def test_runs_that_are_not_the_comparison_are_refused(tmp_path, swap, message):
    runs = three_runs(tmp_path)
    for name, replacement in swap.items():
        runs[name] = runs[replacement]
    with pytest.raises(UsageError, match=message):
        parity.check_runs({name: parity.load_run(path) for name, path in runs.items()})


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("checkpoint-1400/run_settings.json", "no checkpoint with a readable run_settings.json"),
        ("eval_results.json", "eval_results.json is not valid JSON"),
    ],
)
def test_a_damaged_run_file_is_refused_in_one_line(tmp_path, damage, message):
    run_dir = three_runs(tmp_path)["bf16"]
    (run_dir / damage).write_text('{"seed": ')
    with pytest.raises(UsageError, match=message):
        parity.load_run(run_dir)


def test_settings_that_only_watch_a_run_may_differ_but_the_dev_rows_scored_may_not(tmp_path):
    runs = three_runs(tmp_path, logging_steps=50, data_dir="elsewhere")
    parity.check_runs({name: parity.load_run(path) for name, path in runs.items()})
    runs = three_runs(tmp_path / "capped", max_eval_samples=200)
    with pytest.raises(UsageError, match="differ in max_eval_samples"):
        parity.check_runs({name: parity.load_run(path) for name, path in runs.items()})


def test_runs_of_another_job_are_refused_by_the_program_in_one_line(tmp_path):
    runs = three_runs(tmp_path, max_steps=1000)
    command = [sys.executable, "-m", "camtl.bench", "parity", "--output", str(tmp_path / "parity.md")]
    for name, path in runs.items():
        command += [f"--{name}", str(path)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2 and "differ in max_steps" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "parity.md").exists()
    (runs["bf16"] / "eval_results.json").unlink()
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2 and "--do_eval" in result.stderr
