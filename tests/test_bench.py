"""The benchmark programs (the speed program is in test_speed.py): the probe, the margins and the
diagnosis helpers; the study's bootstrap and verdicts, and the study end to end with a tiny random BERT
over the GLUE fixtures."""

import argparse
import dataclasses
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from camtl.bench import diagnosis, probe, report, study, study_plan, trace
from camtl.bench.common import replace_flags
from camtl.errors import UsageError

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "glue"
RECORD_KEYS = {"contender", "seed", "scores", "glue_average", "examples_seen", "trainable_params",
               "wall_seconds", "cpu_seconds", "train_runtime", "percent_data_used", "command", "precision",
               "threads", "cpu"}  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# probe and margins


def test_pair_features_are_senteval_style():
    u, v = np.array([[1.0, -2.0]]), np.array([[3.0, 1.0]])
    assert probe.pair_features(u, None).tolist() == [[1.0, -2.0]]
    assert probe.pair_features(u, v).tolist() == [[1.0, -2.0, 3.0, 1.0, 2.0, 3.0, 3.0, -2.0]]


def test_the_probe_chooses_its_regularisation_for_the_tasks_metric():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 5))
    labels = (features[:, 0] + 0.3 * rng.normal(size=200) > 0.8).astype(float)  # imbalanced, like CoLA
    fitted = probe.fit_predictor("cola", features, labels)
    assert fitted.best_params_["logisticregression__C"] in probe.C_GRID
    assert fitted.scoring.__class__.__name__ == "_Scorer" or callable(fitted.scoring)
    assert (fitted.predict(features) == labels).mean() > 0.85
    ridge = probe.fit_predictor("sts-b", features, 2.5 + features[:, 1])
    assert np.corrcoef(ridge.predict(features), features[:, 1])[0, 1] > 0.99


def test_dev_scores_cover_the_whole_set_and_each_cap():
    predictions = np.array([1, 1, 0, 0, 1, 0])
    labels = np.array([1, 1, 0, 0, 0, 1])
    scores = probe.dev_scores("rte", predictions, labels, (4, 10))
    assert scores["all"]["accuracy"] == pytest.approx(4 / 6)
    assert scores["4"]["accuracy"] == 1.0 and scores["10"] == scores["all"]


def floor_file(tmp_path: Path) -> Path:
    def result(rows, scores):
        return {"dev_rows": rows, "dev": {key: {"score": value} for key, value in scores.items()}}

    tasks = {
        "cola": result(1043, {"all": 0.05, "1000": 0.06}),
        "rte": result(277, {"all": 0.55, "1000": 0.55}),
        "wnli": result(71, {"all": 0.4, "1000": 0.4}),
    }
    path = tmp_path / "probe.json"
    path.write_text(json.dumps({"probes": {"mean": {"tasks": tasks}}}))
    return path


def test_the_floor_is_read_on_the_runs_own_dev_rows(tmp_path):
    path = floor_file(tmp_path)
    assert probe.load_floor(path, 1000) == {"cola": 0.06, "rte": 0.55, "wnli": 0.4}
    assert probe.load_floor(path, None)["cola"] == 0.05
    assert probe.load_floor(path, 5000)["cola"] == 0.05  # a cap above the dev set is the whole set
    with pytest.raises(UsageError, match="--caps 500"):
        probe.load_floor(path, 500)
    with pytest.raises(UsageError, match="camtl.bench probe"):
        probe.load_floor(tmp_path / "missing.json", 1000)


def test_margins_flag_the_tasks_below_the_floor_but_not_wnli(tmp_path):
    results = {"cola": {"score": 0.01}, "rte": {"score": 0.60}, "wnli": {"score": 0.1}, "glue_average": 0.3}
    rows = probe.margins(results, probe.load_floor(floor_file(tmp_path), 1000))
    assert [(r["task"], round(r["margin"], 2)) for r in rows] == [
        ("cola", -0.05),
        ("rte", 0.05),
        ("wnli", -0.3),
    ]
    text = probe.format_margins(rows, 1000)
    assert "below the floor" in text.splitlines()[2] and "below" not in text.splitlines()[4]
    assert text.endswith("above the floor on 1 of 2 tasks (WNLI not counted)")


def test_margins_give_an_accuracys_interval_on_the_rows_it_was_scored_on(tmp_path):
    path = floor_file(tmp_path)
    rows = probe.rows_scored(path, 1000)
    assert rows == {"cola": 1000, "rte": 277, "wnli": 71}
    results = {"cola": {"score": 0.2}, "rte": {"score": 0.6}, "wnli": {"score": 0.5}}
    table = {r["task"]: r for r in probe.margins(results, probe.load_floor(path, 1000), rows)}
    assert "interval" not in table["cola"]  # MCC: no binomial interval
    low, high = table["rte"]["interval"]
    assert low < 0.6 < high and 0.10 < high - low < 0.13  # Wilson, 166 of 277 right
    assert table["wnli"]["interval"][1] - table["wnli"]["interval"][0] > high - low  # fewer rows, wider
    p, n, z = 166 / 277, 277, 1.959964  # the Wilson interval written out
    centre, half = (
        (p + z * z / (2 * n)) / (1 + z * z / n),
        z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n),
    )
    assert (low, high) == pytest.approx((centre - half, centre + half), abs=1e-6)
    shown = f"[{100 * (centre - half):.1f}, {100 * (centre + half):.1f}]"
    assert shown in probe.format_margins(list(table.values()), 1000).splitlines()[3]


def test_probe_end_to_end_on_the_fixtures(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "camtl.bench", "probe", "--data_dir", str(FIXTURES), "--tasks", "sst-2",
         "sts-b", "--train_rows", "20", "--caps", "5", "--output", str(tmp_path / "probe")],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    written = json.loads((tmp_path / "probe.json").read_text())
    assert set(written["probes"]) == {"mean", "cls"}
    for pooling in ("mean", "cls"):
        tasks = written["probes"][pooling]["tasks"]
        assert set(tasks) == {"sst-2", "sts-b"} and tasks["sst-2"]["train_rows"] == 20
        assert set(tasks["sts-b"]["dev"]) == {"all", "5"}
    assert "| mean | whole dev set |" in (tmp_path / "probe.md").read_text()


# ---------------------------------------------------------------------------------------------------------
# study report: bootstrap, verdicts


@pytest.mark.parametrize("task", ["cola", "mrpc", "sts-b", "mnli"])
def test_resampled_scores_match_the_glue_metrics_on_the_rows_drawn(task):
    from camtl.training.metrics import compute_metrics

    rng = np.random.default_rng(1)
    n = 60
    if task == "sts-b":
        labels, predictions = rng.uniform(0, 5, n), rng.uniform(0, 5, n)
    else:
        classes = 3 if task == "mnli" else 2
        labels, predictions = rng.integers(0, classes, n), rng.integers(0, classes, n)
    rows = rng.integers(0, n, size=(3, n))
    scores = report.resampled_scores(task, predictions, labels, rows)
    for replicate in range(3):
        picked = rows[replicate]
        expected = compute_metrics(task, predictions[picked], labels[picked])["score"]
        assert scores[replicate] == pytest.approx(expected, abs=1e-9)


def test_paired_bootstrap_finds_a_real_difference_and_none_where_there_is_none():
    rng = np.random.default_rng(2)
    labels = {"rte": rng.integers(0, 2, 300), "sst-2": rng.integers(0, 2, 300)}

    def run(accuracy: float, seed: int) -> dict:
        noise = np.random.default_rng(seed)
        return {t: np.where(noise.random(300) < accuracy, y, 1 - y).tolist() for t, y in labels.items()}

    better = {s: run(0.85, 10 + s) for s in (1, 2, 3)}
    worse = {s: run(0.60, 20 + s) for s in (1, 2, 3)}
    result = report.paired_bootstrap(better, worse, labels, replicates=500)
    assert result["seeds"] == [1, 2, 3] and all(d > 0.15 for d in result["per_seed"].values())
    assert 0.15 < result["low"] < result["mean"] < result["high"] < 0.35
    assert report.verdict(result, "beats") == "held"
    same = report.paired_bootstrap(better, better, labels, replicates=200)
    assert same["low"] == same["high"] == same["mean"] == 0.0
    assert report.verdict(same, "beats") == "inconclusive (interval includes 0)"
    assert report.verdict(same, "matches") == "held"
    reversed_ = report.paired_bootstrap(worse, better, labels, replicates=200)
    assert report.verdict(reversed_, "beats") == "not held (reversed)"
    assert report.verdict(reversed_, "matches") == "not held"
    straddling = {"low": -0.02, "high": 0.005}  # across -1 GLUE point, the margin of "matches"
    assert report.verdict(straddling, "matches") == "inconclusive (interval includes -1 point)"


# ---------------------------------------------------------------------------------------------------------
# diagnosis helpers


def test_replace_flags_sets_adds_and_removes_flags():
    flags = ("--a", "1", "--b", "2")
    assert replace_flags(flags, b="3") == ("--a", "1", "--b", "3")
    assert replace_flags(flags, a=None, c="4") == ("--b", "2", "--c", "4")
    listed = ("--tasks", "cola", "rte", "--overwrite_output_dir", "--lr", "-1", "--tasks", "mrpc")
    replaced = replace_flags(listed, tasks=("sst-2", "qnli"))
    assert replaced == ("--overwrite_output_dir", "--lr", "-1", "--tasks", "sst-2", "qnli")
    removed = replace_flags(listed, overwrite_output_dir=None, tasks=None, do_train=())
    assert removed == ("--lr", "-1", "--do_train")
    spelled = ("--resume_from_checkpoint=checkpoint-4", "--no_dataloader_pin_memory", "--seed", "3")
    assert replace_flags(spelled, resume_from_checkpoint="latest", dataloader_pin_memory=None) == (
        "--seed", "3", "--resume_from_checkpoint", "latest"
    )  # fmt: skip


EXPECTED_CHANGES = {
    "reference": set(),
    "random-batches": {"--train_sampling_strategy"},
    "proportional": {"--task_sampling", "--sampling_temperature"},
    "cls-pooling": {"--pooling"},
    "heads-x1": {"--head_lr_multiplier"},
    "lr5e-5": {"--learning_rate"},
    "seq64": {"--max_seq_length"},
    "frozen-0-2": {"--freeze_encoder_layers"},
    "example-mean": {"--loss_reduction"},
    "vanilla": {"--layout"},
    "mt-uncertainty": {"--task_sampling", "--sampling_temperature"},
}


def test_each_factor_variant_changes_only_what_it_names():
    def as_dict(flags):
        return dict(zip(flags[::2], flags[1::2], strict=True))

    reference = as_dict(diagnosis.REFERENCE)
    for variant in diagnosis.factor_variants():
        flags = as_dict(variant.flags)
        changed = {f for f in set(flags) | set(reference) if flags.get(f) != reference.get(f)}
        assert changed == EXPECTED_CHANGES[variant.name], variant.name


def test_a_factor_that_changes_the_step_cost_gets_the_steps_of_the_references_time(tmp_path):
    args = argparse.Namespace(output=tmp_path, budget_steps=400)
    (tmp_path / "calibration").mkdir()
    pair = {"reference": {"seconds_per_step": 0.8}, "variant": {"seconds_per_step": 2.0}}
    (tmp_path / "calibration" / "mt-uncertainty.json").write_text(json.dumps(pair))
    steps, calibration = diagnosis.steps_of(diagnosis.VARIANTS["mt-uncertainty"], args)
    assert steps == 160 and calibration["cost_ratio"] == pytest.approx(2.5)
    assert diagnosis.steps_of(diagnosis.VARIANTS["cls-pooling"], args) == (400, None)  # same cost: no pricing
    assert diagnosis.steps_of(diagnosis.VARIANTS["cola-cls-lr1e-4"], args) == (diagnosis.COLA_STEPS, None)
    priced = {v.name for v in diagnosis.factor_variants() if v.priced}
    assert priced == {"mt-uncertainty", "random-batches", "seq64", "frozen-0-2"}


def test_trace_reads_class_counts_bias_and_losses_from_each_checkpoint(tiny_bert, tmp_path):
    from camtl.model import load_model, load_tokenizer

    run_dir = tmp_path / "run"
    for step in (2, 10):
        model = load_model(str(tiny_bert), ["cola", "rte"], layout="none", max_seq_length=32)
        with torch.no_grad():  # a head that always says "acceptable"
            model.heads.classifier.bias[model.heads.columns[0][1]] = 50.0 if step == 10 else 0.0
        model.save_pretrained(run_dir / f"checkpoint-{step}")
        load_tokenizer(str(tiny_bert)).save_pretrained(run_dir / f"checkpoint-{step}")
    load_tokenizer(str(tiny_bert)).save_pretrained(run_dir)
    entries = trace.trace_run(run_dir, "cola", str(FIXTURES), 32, tmp_path / "cache")
    assert [e["step"] for e in entries] == [2, 10]
    last = entries[-1]
    assert last["bias"][1] == 50.0 and last["dev"]["predicted_counts"] == [
        0,
        sum(last["dev"]["label_counts"]),
    ]
    assert last["dev"]["metrics"]["mcc"] == 0.0
    assert set(last["train_loss"]) == {"cola", "rte"} and all(
        math.isfinite(v) for v in last["train_loss"].values()
    )


# ---------------------------------------------------------------------------------------------------------
# glue-mini: planning and end to end


def quick_settings(tiny_bert, **changes) -> study_plan.Settings:
    values = {**study_plan.QUICK, "precision": "fp32", **changes}
    return study_plan.Settings(
        data_dir=str(FIXTURES), backbone=str(tiny_bert), tasks=("rte", "sts-b", "wnli"), **values
    )


def test_run_flags_follow_the_contender(tmp_path, tiny_bert):
    settings = quick_settings(tiny_bert)
    flags = {
        name: study_plan.run_flags(c, settings, 3, tmp_path, tmp_path)
        for name, c in study_plan.CONTENDERS.items()
    }
    assert flags["vanilla"][flags["vanilla"].index("--layout") + 1] == "none"
    assert flags["vanilla"][flags["vanilla"].index("--task_sampling") + 1] == "temperature"
    mtu = flags["ca-mtl-mtu"]
    assert mtu[mtu.index("--task_sampling") + 1] == "mt-uncertainty" and "--sampling_temperature" not in mtu
    attention = flags["+attention"]
    assert attention[attention.index("--conditional_modules") + 1 :][:2] == ["alignment", "attention"]
    assert "--conditional_modules" not in flags["ca-mtl"] and "--head_lr_multiplier" in flags["heads-x10"]
    assert all("group_by_length" in f for f in flags.values())
    assert all(f[f.index("--precision") + 1] == "fp32" for f in flags.values())
    # the core contenders evaluate during training (the learning curve), the ablations do not
    assert "--eval_strategy" in flags["ca-mtl"] and "--eval_strategy" not in flags["heads-x10"]
    single = study_plan.run_flags(
        study_plan.CONTENDERS["single-task"], settings, 3, tmp_path, tmp_path, "rte", 2
    )
    assert single[single.index("--tasks") + 1 :][:2] == ["rte", "--layout"]
    assert single[single.index("--max_steps") + 1] == "2" and "--task_sampling" not in single
    assert "--eval_strategy" not in single


def test_single_task_models_see_what_the_multitask_sampler_draws_of_their_task(tiny_bert, tmp_path):
    for task, rows in (("RTE", 8), ("STS-B", 24)):  # 8 and 24 training rows
        lines = (FIXTURES / task / "train.tsv").read_text().splitlines()[: rows + 1]
        (tmp_path / task).mkdir()
        (tmp_path / task / "train.tsv").write_text("\n".join(lines) + "\n")
    settings = dataclasses.replace(
        quick_settings(tiny_bert, max_steps=100), data_dir=str(tmp_path), tasks=("rte", "sts-b")
    )
    # temperature 3: shares 8 ** (1/3) = 2 : 24 ** (1/3) = 2.884
    assert study_plan.single_task_steps(settings) == {"rte": 41, "sts-b": 59}
    proportional = dataclasses.replace(settings, task_sampling="proportional")
    assert study_plan.single_task_steps(proportional) == {"rte": 25, "sts-b": 75}
    with_wnli = quick_settings(tiny_bert, max_steps=30)  # 24 rows each: a third each, and no WNLI model
    assert study_plan.single_task_steps(with_wnli) == {"rte": 10, "sts-b": 10}


def test_the_queue_runs_every_core_contender_of_a_seed_before_the_next_seed_and_ablations_last():
    order = study_plan.queue([1, 2], ["heads-x10", "ca-mtl", "vanilla", "single-task"])
    assert order == [
        (1, "ca-mtl"), (1, "vanilla"), (1, "single-task"), (2, "ca-mtl"), (2, "vanilla"), (2, "single-task"),
        (1, "heads-x10"), (2, "heads-x10"),
    ]  # fmt: skip


def glue_mini(tiny_bert, tmp_path, *flags) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "camtl.bench", "glue-mini", "--quick", "--data_dir", FIXTURES,
        "--backbone", tiny_bert, "--output", tmp_path / "results", "--work_dir", tmp_path / "work",
        "--features_cache_dir", tmp_path / "cache", "--tasks", "rte", "sts-b", "--seeds", 1, *flags,
    ]  # fmt: skip
    return subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, cwd=REPO, timeout=300
    )


def test_study_writes_records_resumes_and_reports(tiny_bert, tmp_path):
    contenders = ["--contenders", "single-task", "ca-mtl-mtu", "--workers", "2"]
    first = glue_mini(tiny_bert, tmp_path, *contenders)
    assert first.returncode == 0, first.stderr[-3000:] + first.stdout[-2000:]
    runs = tmp_path / "results" / "runs"
    records = {p.name: json.loads(p.read_text()) for p in runs.glob("*.json") if "predictions" not in p.name}
    assert set(records) == {"single-task-seed1.json", "ca-mtl-mtu-seed1.json"}
    for name, record in records.items():
        assert set(record) >= RECORD_KEYS
        assert set(record["scores"]) == {"rte", "sts-b"}
        predictions = json.loads((runs / name.replace(".json", ".predictions.json")).read_text())
        assert {t: len(p) for t, p in predictions.items()} == {"rte": 8, "sts-b": 8}  # --max_eval_samples 8
    single, mtu = records["single-task-seed1.json"], records["ca-mtl-mtu-seed1.json"]
    assert single["steps_per_task"] == {"rte": 2, "sts-b": 2}  # what the 4-step multitask run draws of each
    assert mtu["precision"] == single["precision"] == study.choose_precision("auto", "cpu").precision
    # the core contenders evaluate every quarter of training; the last point is the saved model's score
    assert [point["step"] for point in mtu["learning_curve"]] == [1, 2, 3, 4]
    assert mtu["learning_curve"][-1]["glue_average"] == mtu["glue_average"]
    assert mtu["examples_seen"] == 4 * 4 and 0 < mtu["percent_data_used"] <= 100
    assert single["trainable_params"] > mtu["trainable_params"]  # two encoders against one
    assert mtu["task_mix"][-1]["drawn"]["rte"] + mtu["task_mix"][-1]["drawn"]["sts-b"] == 16
    assert mtu["glue_average"] == pytest.approx((mtu["scores"]["rte"] + mtu["scores"]["sts-b"]) / 2)

    stamps = {path: path.stat().st_mtime_ns for path in runs.glob("*.json")}
    again = glue_mini(tiny_bert, tmp_path, *contenders)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 runs done before, skipped" in again.stdout
    assert {path: path.stat().st_mtime_ns for path in runs.glob("*.json")} == stamps

    results = tmp_path / "results"
    table = (results / "table.md").read_text()
    assert "| single-task | 1 |" in table and "| ca-mtl-mtu | 1 |" in table
    assert "| ca-mtl-mtu - single-task |" in table and "python -m camtl.bench glue-mini --quick" in table
    assert "CA-MTL + MT-U surpasses single-task" in (results / "claims.md").read_text()
    for figure in ("task_mix.png", "learning_curves.png", "claims.png"):
        assert (results / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    changed = glue_mini(tiny_bert, tmp_path, *contenders, "--max_steps", 6)
    assert changed.returncode == 2 and "other settings" in changed.stderr
    more_threads = glue_mini(tiny_bert, tmp_path, *contenders, "--threads", 2)  # scheduling, not a setting
    assert more_threads.returncode == 0 and "2 runs done before, skipped" in more_threads.stdout


def test_an_undefined_correlation_counts_as_no_correlation_in_the_study():
    from camtl.bench.study_runs import study_summary
    from camtl.training.metrics import compute_metrics

    gold = np.array([0.5, 2.0, 4.5, 3.0])
    results = {
        "sts-b": compute_metrics("sts-b", np.full(4, 2.5), gold),  # constant: undefined for run.py
        "rte": compute_metrics("rte", np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])),
    }
    assert results["sts-b"]["score"] is None
    summary = study_summary(results)
    assert summary["sts-b"]["score"] == 0.0 and summary["sts-b"]["undefined"] is True
    assert summary["glue_average"] == pytest.approx((0.0 + 0.75) / 2)  # over the same tasks as any run's


def test_train_minutes_leave_out_a_run_resumed_after_a_hard_stop():
    def record(seed: int, runtime: float, resumed_from: int | None) -> dict:
        return {
            "contender": "vanilla", "seed": seed, "scores": {"rte": 0.5}, "glue_average": 0.5,
            "trainable_params": 10, "examples_seen": 64, "percent_data_used": 1.0, "cpu": "CPU",
            "cpu_seconds": runtime, "train_runtime": runtime, "resumed_from_step": resumed_from,
        }  # fmt: skip

    runs = [record(1, 600.0, None), record(2, 1200.0, None), record(3, 60.0, 1800)]
    row = report.summarize(runs)["vanilla"]
    assert row["train_minutes"] == pytest.approx(15.0) and row["timed_runs"] == 2
    assert report.timed_cell(row, 3) == "15.0 (2 of 3 runs)"
    assert report.summarize(runs[2:])["vanilla"]["train_minutes"] is None


def test_the_task_mix_figure_draws_ca_mtl_and_skips_records_without_a_mix(tmp_path):
    from camtl.bench import figures

    mix = [
        {"step": 100, "drawn": {"rte": 1000, "cola": 2200}},
        {"step": 200, "drawn": {"rte": 2000, "cola": 4400}},
    ]
    records = [
        {"contender": "ca-mtl", "task_mix": mix},
        {"contender": "ca-mtl", "task_mix": []},  # a record of a run that logged no mix
        {"contender": "vanilla", "task_mix": mix},  # not drawn: the same sampler as ca-mtl
    ]
    figures.plot_task_mix(records, tmp_path / "task_mix.png", 32)
    assert (tmp_path / "task_mix.png").stat().st_size > 0
    figures.plot_task_mix(records[2:], tmp_path / "none.png", 32)
    assert not (tmp_path / "none.png").exists()


def test_a_single_task_record_says_which_of_its_models_resumed(tiny_bert, tmp_path):
    from camtl.bench.study_runs import part_file, single_task_record

    settings, contender = quick_settings(tiny_bert), study_plan.CONTENDERS["single-task"]
    for task, resumed in (("rte", 187), ("sts-b", None)):  # WNLI gets no single-task model
        part = {"metrics": {task: {"score": 0.5}}, "examples_seen": 64, "trainable_params": 10,
                "total_params": 10, "wall_seconds": 60.0, "train_runtime": 50.0, "cpu_seconds": 55.0,
                "cpu": "CPU", "predictions": {task: [0]}, "steps": 2, "percent_data_used": 1.0,
                "command": "run.py", "resumed_from_step": resumed}  # fmt: skip
        part_file(tmp_path, contender, 1, task).write_text(json.dumps(part))
    record = single_task_record(contender, 1, settings, tmp_path)
    assert record["resumed_from_step"] == {"rte": 187} and record["train_runtime"] == 100.0
    assert report.whole_run_times([record]) == []  # its time lacks the part before rte's stop


def test_a_run_cut_short_by_a_stop_resumes_from_its_checkpoint(tiny_bert, tmp_path):
    whole = glue_mini(tiny_bert, tmp_path / "whole", "--contenders", "vanilla")
    assert whole.returncode == 0, whole.stderr[-3000:]
    reference = json.loads((tmp_path / "whole" / "results" / "runs" / "vanilla-seed1.json").read_text())
    assert reference["resumed_from_step"] is None
    # What a stop after step 2 leaves: the same run, its newest full checkpoint at step 2 (made by keeping
    # every checkpoint of an identical run and removing those after step 2).
    run_dir = tmp_path / "cut" / "work" / "vanilla-seed1"
    flags = shlex.split(reference["command"])[2:]
    flags[flags.index("--output_dir") + 1] = str(run_dir)
    flags[flags.index("--save_total_limit") + 1] = "4"
    made = subprocess.run(
        [sys.executable, "run.py", *flags],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": str(reference["threads"])},
    )
    assert made.returncode == 0, made.stderr[-3000:]
    for step in (3, 4):
        shutil.rmtree(run_dir / f"checkpoint-{step}")
    resumed = glue_mini(tiny_bert, tmp_path / "cut", "--contenders", "vanilla")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record = json.loads((tmp_path / "cut" / "results" / "runs" / "vanilla-seed1.json").read_text())
    assert record["resumed_from_step"] == 2 and "--resume_from_checkpoint latest" in record["command"]
    assert record["scores"] == reference["scores"]
    assert record["learning_curve"] == reference["learning_curve"]
    assert [c.name for c in run_dir.glob("checkpoint-*")] == ["checkpoint-4"]  # --save_total_limit 1


def test_sigterm_stops_the_study_cleanly_and_the_same_command_continues(tiny_bert, tmp_path):
    command = [sys.executable, "-m", "camtl.bench", "glue-mini", "--quick", "--data_dir", FIXTURES,
               "--backbone", tiny_bert, "--output", tmp_path / "results", "--work_dir", tmp_path / "work",
               "--features_cache_dir", tmp_path / "cache", "--tasks", "rte", "--seeds", 1,
               "--contenders", "vanilla", "--max_steps", 400]  # fmt: skip
    study_process = subprocess.Popen([str(part) for part in command], cwd=REPO, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)  # fmt: skip
    run_dir = tmp_path / "work" / "vanilla-seed1"
    deadline = time.monotonic() + 240
    while not (run_dir / "checkpoint-100").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    study_process.send_signal(signal.SIGTERM)
    _, stderr = study_process.communicate(timeout=240)
    assert study_process.returncode == 143, stderr[-3000:]
    assert "stopped by SIGTERM: the runs in progress saved a checkpoint" in stderr.splitlines()[-1]
    assert not (tmp_path / "results" / "runs" / "vanilla-seed1.json").exists()
    [saved] = run_dir.glob("checkpoint-*")
    stopped_at = int(saved.name.split("-")[1])
    assert 100 <= stopped_at < 400  # saved where the signal found it, not only at a quarter

    again = subprocess.run([str(part) for part in command], cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    record = json.loads((tmp_path / "results" / "runs" / "vanilla-seed1.json").read_text())
    assert record["resumed_from_step"] == stopped_at
    assert [point["step"] for point in record["learning_curve"]] == [100, 200, 300, 400]


def test_device_check_runs_its_code_paths_on_the_cpu(tmp_path):
    from camtl.bench import device
    from camtl.training.precision import this_cpu

    output = tmp_path / "device.json"
    result = device.run(argparse.Namespace(reduced=True, output=output))
    assert json.loads(output.read_text()) == json.loads(json.dumps(result))
    agreement = result["precision_agreement"]
    assert len(agreement["losses"]["fp32"]) == 3
    assert ("bf16" in agreement) == this_cpu().native_bf16  # emulated bf16 is refused, as in run.py
    assert "bf16" not in agreement or agreement["bf16"]["agrees"]
    assert result["sync_check"] == {"checked": False, "reason": "needs CUDA"}
    throughput = result["throughput"]
    assert set(throughput["seconds_per_step"]) == {"vanilla", "camtl", "mt_uncertainty"}
    assert throughput["camtl_vs_vanilla"] > 0 and throughput["mtu_vs_floor"] > 1


def test_step_flops_count_six_flops_per_parameter_and_token():
    from camtl.bench.device import Shape, step_flops

    shape = Shape(layers=1, hidden=10, heads=1, batch=2, seq=3, steps=1)
    assert step_flops(shape) == 6 * 12 * 100 * 6 + 12 * 10 * 3 * 6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the host-sync check needs a CUDA device")
def test_training_and_mt_uncertainty_steps_make_no_host_sync():
    from camtl.bench import device

    result = device.sync_check(device.REDUCED, torch.device("cuda"))
    assert result == {"checked": True, "training_step": "no host sync", "mt_uncertainty_step": "no host sync"}


def test_study_refuses_before_any_run_when_the_reports_could_not_be_written(tiny_bert, tmp_path):
    probe_file = tmp_path / "probe.json"
    scores = {"dev_rows": 277, "dev": {"all": {"score": 0.5}, "1000": {"score": 0.5}}}
    probe_file.write_text(json.dumps({"probes": {"mean": {"tasks": {"rte": scores, "sts-b": scores}}}}))
    result = glue_mini(tiny_bert, tmp_path, "--contenders", "vanilla", "--probe", probe_file)
    assert result.returncode == 2 and "no scores on the first 8 dev rows" in result.stderr
    assert not (tmp_path / "work").exists() and not (tmp_path / "results" / "runs").exists()


def test_the_peer_benchmark_runs_the_hf_recipe_and_camtl_on_one_job(monkeypatch):
    from camtl.bench import peer

    monkeypatch.setattr(peer, "CONTENDERS", {"hf-trainer-fp32": None, "camtl-default": {}})
    job = {**peer.QUICK_JOB, "max_train": 8, "max_eval": 8}
    result = peer.measure(str(FIXTURES), job, passes=1)
    for name in ("hf-trainer-fp32", "camtl-default"):
        (run,) = result["runs"][name]
        assert run["train_runtime"] > 0 and math.isfinite(run["train_loss"]) and 0 <= run["dev_accuracy"] <= 1
    expected = (
        result["median_train_runtime"]["hf-trainer-fp32"] / result["median_train_runtime"]["camtl-default"]
    )
    assert result["ratios"]["hf_default_vs_camtl_default"] == pytest.approx(expected)
    assert "| camtl-default |" in peer.format_report(result, "python -m camtl.bench peer")
