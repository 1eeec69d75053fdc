"""The benchmark programs: the speed program's timing and ratio code, and the glue-mini study end to end
with a tiny random BERT over the GLUE fixtures."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from camtl.bench import speed, study
from camtl.errors import UsageError

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "glue"
RECORD_KEYS = {
    "contender",
    "seed",
    "scores",
    "glue_average",
    "examples_seen",
    "trainable_params",
    "wall_seconds",
}


# ---------------------------------------------------------------------------------------------------------
# speed: timing and ratios on given numbers


def test_paired_ratio_is_the_median_of_per_round_ratios():
    # Round 2 is disturbed for both contenders alike: the paired ratio ignores it, medians alone would not.
    camtl = [1.02, 5.10, 1.03, 1.05, 0.99]
    vanilla = [1.00, 5.00, 1.00, 1.00, 1.00]
    assert speed.paired_ratio(camtl, vanilla) == pytest.approx(1.02)
    assert speed.paired_ratio([2.0, 4.0], [1.0, 1.0]) == pytest.approx(3.0)  # even count: mean of the middle
    with pytest.raises(ValueError):
        speed.paired_ratio([1.0, 2.0], [1.0])


def test_paired_ratio_quartiles_show_how_far_rounds_disagree():
    camtl = [1.0, 1.1, 1.2, 1.3, 1.4]
    assert speed.paired_ratio_quartiles(camtl, [1.0] * 5) == pytest.approx((1.1, 1.3))
    assert speed.paired_ratio_quartiles([2.0], [1.0]) == (2.0, 2.0)  # one round (quick): no spread


def test_summarize_times_reports_median_and_throughput():
    summary = speed.summarize_times([2.0, 1.0, 4.0], examples=32)
    assert summary["median_s"] == 2.0
    assert summary["examples_per_s"] == 16.0
    assert (summary["min_s"], summary["max_s"], summary["rounds"]) == (1.0, 4.0, 3)


def test_check_targets_applies_each_bound_in_its_direction():
    checked = speed.check_targets(
        {"camtl_vs_vanilla_small": 1.04, "mtu_vs_floor": 1.2, "dynamic_vs_fixed_padding": 2.5, "other": 9.0}
    )
    assert checked["camtl_vs_vanilla_small"]["met"] is True
    assert checked["mtu_vs_floor"]["met"] is False
    assert checked["dynamic_vs_fixed_padding"] == {"value": 2.5, "target": ">= 2.0", "met": True}
    assert set(checked) == {"camtl_vs_vanilla_small", "mtu_vs_floor", "dynamic_vs_fixed_padding"}


def test_alternate_reverses_the_order_and_drops_warmup_rounds():
    calls = []
    steps = {name: (lambda i, name=name: calls.append((name, i))) for name in ("a", "b", "c")}
    seconds = speed.alternate(steps, rounds=2, warmup=1)
    assert calls == [("a", 0), ("b", 0), ("c", 0), ("c", 1), ("b", 1), ("a", 1), ("a", 2), ("b", 2), ("c", 2)]
    assert {name: len(times) for name, times in seconds.items()} == {"a": 2, "b": 2, "c": 2}


def test_grouped_batches_hold_the_same_tasks_with_less_padding(bundled_tokenizer, tmp_path):
    from camtl.features import load_features

    train_sets = {
        task: load_features(FIXTURES, task, "train", bundled_tokenizer, 128, tmp_path)
        for task in ("sst-2", "mnli", "rte", "qnli")
    }

    def padding_and_tasks(batches):
        padding = sum(max(len(e["input_ids"]) for e in b) * len(b) - sum(len(e["input_ids"]) for e in b)
                      for b in batches)  # fmt: skip
        return padding, sorted(int(e["task_id"]) for b in batches for e in b)

    plain_padding, plain_tasks = padding_and_tasks(speed.drawn_batches(train_sets, "proportional", 3))
    grouped = speed.drawn_batches(train_sets, "proportional", 3, group_by_length=True)
    grouped_padding, grouped_tasks = padding_and_tasks(grouped)
    assert [len(b) for b in grouped] == [speed.BATCH_SIZE] * 3
    assert grouped_tasks == plain_tasks  # one epoch of 96 examples: the same draw, batched differently
    assert grouped_padding < 0.75 * plain_padding


def test_length_sorted_chunks_cover_the_pool_once_with_least_padding():
    import torch

    lengths = torch.tensor([3, 9, 1, 5, 7, 2, 8])
    mask = (torch.arange(10)[None, :] < lengths[:, None]).long()
    pool = {
        "input_ids": mask * 5,
        "token_type_ids": 0 * mask,
        "attention_mask": mask,
        "task_ids": lengths % 3,
    }
    chunks = speed.length_sorted_chunks(pool, size=3)
    assert [c["input_ids"].shape for c in chunks] == [(3, 9), (3, 5), (1, 1)]
    assert sorted(int(n) for c in chunks for n in c["attention_mask"].sum(1)) == sorted(lengths.tolist())
    assert [c["task_ids"].tolist() for c in chunks] == [[0, 2, 1], [2, 0, 2], [1]]


# ---------------------------------------------------------------------------------------------------------
# glue-mini: planning


def test_split_budget_is_proportional_exact_and_gives_every_task_a_step():
    assert study.split_budget(10, [100, 100, 200, 400]) == [1, 1, 3, 5]
    steps = study.split_budget(20, [2000, 2000, 635, 3])
    assert sum(steps) == 20 and min(steps) >= 1
    assert steps[0] == steps[1] > steps[2] > steps[3]
    with pytest.raises(UsageError):
        study.split_budget(2, [1, 1, 1])


def test_default_backbone_is_recorded_by_name_and_resolves(tmp_path):
    args = argparse.Namespace(quick=True, backbone=None, data_dir=str(tmp_path), tasks=["rte"])
    args.__dict__.update(dict.fromkeys(study.FULL))
    settings = study.settings_from(args)
    assert settings.backbone == "all-MiniLM-L6-v2"  # not this checkout's site-packages path
    assert study.freeze_spec(settings.backbone) == "0-2"  # the bundled encoder has 6 layers
    with pytest.raises(UsageError, match="not a BERT directory"):
        study.settings_from(argparse.Namespace(**{**vars(args), "backbone": str(tmp_path)}))


def test_run_flags_follow_the_contender(tmp_path, tiny_bert):
    settings = study.Settings(data_dir="glue", backbone=str(tiny_bert), tasks=("rte", "sts-b"), **study.QUICK)
    mtu = study.run_flags(study.CONTENDERS["ca-mtl-mtu-frozen"], settings, 3, tmp_path, tmp_path)
    assert "--use_mt_uncertainty" in mtu
    assert mtu[mtu.index("--freeze_encoder_layers") + 1] == "0-1"  # bottom half of 4 layers
    assert mtu[mtu.index("--tasks") + 1 : mtu.index("--tasks") + 3] == ["rte", "sts-b"]
    vanilla = study.run_flags(study.CONTENDERS["vanilla-mtl"], settings, 3, tmp_path, tmp_path)
    assert vanilla[vanilla.index("--layout") + 1] == "none"
    assert "--use_mt_uncertainty" not in vanilla
    single = study.run_flags(study.CONTENDERS["single-task"], settings, 3, tmp_path, tmp_path, "rte", 2)
    assert single[single.index("--tasks") + 1 :].count("sts-b") == 0
    assert single[single.index("--max_steps") + 1] == "2" and "--eval_strategy" not in single


# ---------------------------------------------------------------------------------------------------------
# glue-mini: end to end


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
    contenders = ["--contenders", "single-task", "ca-mtl-mtu"]
    first = glue_mini(tiny_bert, tmp_path, *contenders)
    assert first.returncode == 0, first.stderr[-3000:] + first.stdout[-2000:]
    runs = tmp_path / "results" / "runs"
    records = {path.name: json.loads(path.read_text()) for path in runs.glob("*.json")}
    assert set(records) == {"single-task-seed1.json", "ca-mtl-mtu-seed1.json"}
    for record in records.values():
        assert set(record) >= RECORD_KEYS
        assert set(record["scores"]) == {"rte", "sts-b"}
        assert record["examples_seen"] == 4 * 4  # the same budget for every contender: steps x batch
        assert 0 < record["percent_data_used"] <= 100
    single, mtu = records["single-task-seed1.json"], records["ca-mtl-mtu-seed1.json"]
    assert sum(single["steps_per_task"].values()) == 4
    assert single["trainable_params"] > mtu["trainable_params"]  # two encoders against one
    assert [e["step"] for e in mtu["eval_history"]] == [2, 4]
    assert mtu["task_mix"][-1]["drawn"]["rte"] + mtu["task_mix"][-1]["drawn"]["sts-b"] == 16
    assert mtu["glue_average"] == pytest.approx((mtu["scores"]["rte"] + mtu["scores"]["sts-b"]) / 2)

    # A second invocation runs nothing: every record exists.
    stamps = {path: path.stat().st_mtime_ns for path in runs.glob("*.json")}
    again = glue_mini(tiny_bert, tmp_path, *contenders)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done before, skipped") == 2
    assert {path: path.stat().st_mtime_ns for path in runs.glob("*.json")} == stamps

    # Table, plots and results.json come from the records.
    results = tmp_path / "results"
    table = (results / "table.md").read_text()
    assert "| single-task | 1 |" in table and "| ca-mtl-mtu | 1 |" in table
    assert "python -m camtl.bench glue-mini --quick" in table
    for plot in ("dev_average_vs_examples.png", "task_mix.png"):
        assert (results / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((results / "results.json").read_text())
    assert summary["contenders"]["ca-mtl-mtu"]["glue_average"]["mean"] == pytest.approx(mtu["glue_average"])

    # Other settings in the same output folder are refused: runs would not be comparable.
    changed = glue_mini(tiny_bert, tmp_path, *contenders, "--max_steps", 6)
    assert changed.returncode == 2 and "other settings" in changed.stderr


def test_summarize_records_gives_mean_and_std_over_seeds():
    def record(seed, rte, average):
        shared = {"trainable_params": 10, "percent_data_used": 50.0, "examples_seen": 16, "wall_seconds": 60}
        return {
            "contender": "ca-mtl",
            "seed": seed,
            "scores": {"rte": rte},
            "glue_average": average,
            **shared,
        }

    summary = study.summarize_records([record(1, 0.5, 0.6), record(2, 0.7, 0.8)])
    assert summary["ca-mtl"]["seeds"] == [1, 2]
    assert summary["ca-mtl"]["scores"]["rte"]["mean"] == pytest.approx(0.6)
    assert summary["ca-mtl"]["scores"]["rte"]["std"] == pytest.approx(0.1414, abs=1e-4)
    assert summary["ca-mtl"]["glue_average"]["mean"] == pytest.approx(0.7)


def test_device_check_runs_its_code_paths_on_the_cpu(tmp_path):
    from camtl.bench import device

    output = tmp_path / "device.json"
    result = device.run(argparse.Namespace(reduced=True, output=output))
    assert json.loads(output.read_text()) == json.loads(json.dumps(result))
    agreement = result["precision_agreement"]
    assert agreement["bf16"]["agrees"] and len(agreement["losses"]["fp32"]) == 3
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
