"""The speed program: timing and ratio code on given numbers, its batches, and the breakdown by module."""

import math
from pathlib import Path

import pytest
import torch

from camtl.bench import speed, speed_breakdown, speed_report, speed_setup, speed_training
from camtl.model import load_model
from camtl.model.configuration import CONDITIONAL_MODULES
from camtl.model.modules import ConditionalAlignment, ConditionalAttentionBias, ConditionalLayerNorm

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "glue"
TASKS4 = ("sst-2", "mnli", "rte", "qnli")  # 96 fixture examples: three batches of 32


def test_paired_ratio_is_the_median_of_per_round_ratios():
    # Round 2 is disturbed for both contenders alike: the paired ratio ignores it, medians alone would not.
    camtl = [1.02, 5.10, 1.03, 1.05, 0.99]
    vanilla = [1.00, 5.00, 1.00, 1.00, 1.00]
    assert speed_report.paired_ratio(camtl, vanilla) == pytest.approx(1.02)
    even = speed_report.paired_ratio([2.0, 4.0], [1.0, 1.0])
    assert even == pytest.approx(3.0)  # an even count of rounds: the mean of the middle two
    with pytest.raises(ValueError):
        speed_report.paired_ratio([1.0, 2.0], [1.0])


def test_paired_ratio_quartiles_show_how_far_rounds_disagree():
    camtl = [1.0, 1.1, 1.2, 1.3, 1.4]
    assert speed_report.paired_ratio_quartiles(camtl, [1.0] * 5) == pytest.approx((1.1, 1.3))
    assert speed_report.paired_ratio_quartiles([2.0], [1.0]) == (2.0, 2.0)  # one round (quick): no spread


def test_summarize_times_reports_median_and_throughput():
    summary = speed_report.summarize_times([2.0, 1.0, 4.0], examples=32)
    assert summary["median_s"] == 2.0
    assert summary["examples_per_s"] == 16.0
    assert (summary["min_s"], summary["max_s"], summary["rounds"]) == (1.0, 4.0, 3)


def test_check_targets_applies_each_bound_in_its_direction():
    checked = speed_report.check_targets(
        {"camtl_vs_vanilla_small": 1.04, "mtu_vs_floor": 1.2, "dynamic_vs_fixed_padding": 2.5, "other": 9.0}
    )
    assert checked["camtl_vs_vanilla_small"]["met"] is True
    assert checked["mtu_vs_floor"]["met"] is False
    assert checked["dynamic_vs_fixed_padding"] == {"value": 2.5, "target": ">= 2.0", "met": True}
    assert set(checked) == {"camtl_vs_vanilla_small", "mtu_vs_floor", "dynamic_vs_fixed_padding"}


def test_alternate_reverses_the_order_and_drops_warmup_rounds():
    calls = []
    steps = {name: (lambda i, name=name: calls.append((name, i))) for name in ("a", "b", "c")}
    seconds = speed_report.alternate(steps, rounds=2, warmup=1)
    assert calls == [("a", 0), ("b", 0), ("c", 0), ("c", 1), ("b", 1), ("a", 1), ("a", 2), ("b", 2), ("c", 2)]
    assert {name: len(times) for name, times in seconds.items()} == {"a": 2, "b": 2, "c": 2}


def test_grouped_batches_hold_the_same_tasks_with_less_padding(bundled_tokenizer, tmp_path):
    from camtl.data.features import load_features

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


def test_the_breakdown_keeps_one_module_per_contender(tiny_bert, bundled_tokenizer, tmp_path, monkeypatch):
    from camtl.data.features import load_features

    built = {}

    def tiny_model(shape, layout, **options):  # the bundled encoder's place, at 4 x 32
        model = load_model(str(tiny_bert), ["sst-2", "rte"], layout=layout, max_seq_length=128, **options)
        modules = options.get("conditional_modules")
        built[f"only_{modules[0]}" if modules else layout] = model
        return model.train()

    monkeypatch.setattr(speed_breakdown, "build_model", tiny_model)
    train_sets = {task: load_features(FIXTURES, task, "train", bundled_tokenizer, 128, tmp_path)
                  for task in ("sst-2", "rte")}  # fmt: skip
    result = speed_breakdown.measure_breakdown("small", train_sets, bundled_tokenizer.pad_token_id, rounds=2)

    def count(model, kind):
        return sum(isinstance(module, kind) for module in model.modules())

    kinds = (ConditionalAttentionBias, ConditionalLayerNorm, ConditionalAlignment)
    found = {name: tuple(count(model, kind) for kind in kinds) for name, model in built.items()}
    assert found == {  # 4 layers: attention in each, CLN in the top two, the adapter's own CLN
        "none": (0, 0, 0),
        "base": (4, 5, 1),
        "only_attention": (4, 0, 0),
        "only_layer_norm": (0, 4, 0),
        "only_alignment": (0, 0, 1),
        "only_adapter": (0, 1, 0),
    }
    assert hasattr(built["only_adapter"].backbone.encoder.layer[-1].output, "adapter")
    assert result["contenders"]["vanilla"]["vs_vanilla"] == 1.0
    assert set(result["module_cost"]) == set(CONDITIONAL_MODULES)
    for module, cost in result["module_cost"].items():
        assert cost == result["contenders"][f"only_{module}"]["vs_vanilla"] - 1 and math.isfinite(cost)
    table = speed_breakdown.format_breakdown(result)
    assert all(f"only_{m}" in table for m in CONDITIONAL_MODULES) and "module cost" in table


def test_training_steps_pool_one_process_per_build_order_on_distinct_batches(monkeypatch):
    asked = []

    def child(
        measurement, features
    ):  # a child that times vanilla 1 s and CA-MTL faster when it is built first
        asked.append(measurement)
        camtl = [1.02, 1.04] if measurement.build_order[0] == "camtl" else [1.06, 1.08]
        lengths = [128] * (measurement.warmup + measurement.rounds)
        return {"seconds": {"camtl_fixed": camtl, "vanilla_fixed": [1.0, 1.0]},
                "padded_lengths": {"fixed": lengths}, "example_lengths": [30.0] * len(lengths)}  # fmt: skip

    monkeypatch.setattr(speed_training, "run_child", child)
    result = speed_training.measure_training_steps("small", 4, ("fixed",), ("g", "c", None), 1)
    assert [m.build_order for m in asked] == [("camtl", "vanilla"), ("vanilla", "camtl")]
    assert [(m.first_batch, m.rounds, m.warmup) for m in asked] == [(0, 2, 1), (2, 2, 1)]
    assert result["ratios"]["camtl_vs_vanilla_fixed"] == pytest.approx(1.05)  # median of all four rounds
    assert result["camtl_vs_vanilla_fixed_by_build_order"] == pytest.approx([1.03, 1.07])
    assert result["steps"]["camtl_fixed"]["rounds"] == 4


def test_a_training_child_builds_in_its_order_and_times_every_step(
    tiny_bert, bundled_tokenizer, tmp_path, monkeypatch
):
    from camtl.data.features import load_features

    built = []

    def tiny_model(shape, layout):
        built.append(layout)
        return load_model(str(tiny_bert), list(TASKS4), layout=layout, max_seq_length=128).train()

    monkeypatch.setattr(speed_training, "build_model", tiny_model)
    train_sets = {task: load_features(FIXTURES, task, "train", bundled_tokenizer, 128, tmp_path)
                  for task in TASKS4}  # fmt: skip
    measurement = speed_training.TrainingMeasurement(
        "small", ("fixed", "dynamic"), 1, 1, 1, ("vanilla", "camtl")
    )
    timed = speed_training.time_training_steps(measurement, train_sets, bundled_tokenizer.pad_token_id)
    assert built == ["none", "base"]
    assert list(timed["seconds"]) == ["camtl_fixed", "vanilla_fixed", "camtl_dynamic", "vanilla_dynamic"]
    assert all(len(times) == 1 and min(times) > 0 for times in timed["seconds"].values())
    assert timed["padded_lengths"]["fixed"] == [128] * 2
    assert max(timed["padded_lengths"]["dynamic"]) < 128


def test_the_precision_axis_times_both_precisions_in_the_same_rounds(
    tiny_bert, bundled_tokenizer, tmp_path, monkeypatch
):
    from camtl.data.features import load_features

    under_autocast = []

    def tiny_model(shape, layout):
        model = load_model(str(tiny_bert), list(TASKS4), layout=layout, max_seq_length=128).train()
        model.backbone.register_forward_hook(
            lambda *_: under_autocast.append(torch.is_autocast_enabled("cpu"))
        )
        return model

    monkeypatch.setattr(speed_training, "build_model", tiny_model)
    train_sets = {task: load_features(FIXTURES, task, "train", bundled_tokenizer, 128, tmp_path)
                  for task in TASKS4}  # fmt: skip
    measurement = speed_training.TrainingMeasurement(
        "small", ("grouped",), 1, 0, 0, ("camtl", "vanilla"), ("fp32", "bf16")
    )
    timed = speed_training.time_training_steps(measurement, train_sets, bundled_tokenizer.pad_token_id)
    assert list(timed["seconds"]) == [
        "camtl_grouped",
        "vanilla_grouped",
        "camtl_grouped_bf16",
        "vanilla_grouped_bf16",
    ]
    assert under_autocast == [False, False, True, True]  # fp32 steps plain, bf16 steps under autocast


def test_precision_ratios_pair_bf16_with_fp32_and_camtl_with_vanilla(monkeypatch):
    def child(measurement, features):
        seconds = {"camtl_grouped": [2.0], "vanilla_grouped": [2.0], "camtl_grouped_bf16": [1.05],
                   "vanilla_grouped_bf16": [1.0]}  # fmt: skip
        return {"seconds": seconds, "padded_lengths": {"grouped": [40]}, "example_lengths": [30.0]}

    monkeypatch.setattr(speed_training, "run_child", child)
    result = speed_training.measure_training_steps(
        "small", 2, ("grouped",), ("g", "c", None), 0, ("fp32", "bf16")
    )
    assert result["ratios"]["camtl_vs_vanilla_grouped_bf16"] == pytest.approx(1.05)
    assert result["ratios"]["fp32_vs_bf16_vanilla_grouped"] == pytest.approx(2.0)  # bf16 twice as fast
    assert "camtl_vs_vanilla_fixed_by_build_order" not in result  # no fixed padding was timed


@pytest.mark.parametrize("native", [True, False])
def test_the_precision_axis_measures_fp32_alone_where_bf16_is_not_native(native, monkeypatch):
    from camtl.bench import speed_precision
    from camtl.training.precision import CpuReport

    cpu = CpuReport.of({"avx512_bf16": native}, "a CPU")
    monkeypatch.setattr(speed_precision, "this_cpu", lambda: cpu)
    monkeypatch.setattr(speed_precision, "model_parameters", lambda shape: {"camtl": 10, "vanilla": 8})
    monkeypatch.setattr(speed_precision, "GEMM_SIZE", 64)
    asked = []

    def training(shape, rounds, paddings, precisions):
        asked.append(precisions)
        names = [speed_training.step_name(c, "grouped", p) for p in precisions for c in ("camtl", "vanilla")]
        steps = {n: {"median_s": 0.4, "seconds": [0.2, 0.4, 2.4]} for n in names}  # a long batch is slow
        return {"steps": steps, "timed_padded_lengths": {"grouped": [4, 8, 60]}, "ratios": {}}

    mtu = {"ratios": {"mtu_vs_floor": 1.01}, "steps": {"mtu_step": {"median_s": 1.0}}}
    evaluation = {"camtl_vs_vanilla": 1.02, "camtl": {"examples_per_s": 10.0}}
    axis = speed_precision.measure_precision_axis(
        training, lambda p: mtu, lambda p: evaluation, {"small": 1, "base": 1}, lambda message: None
    )
    expected = ("fp32", "bf16") if native else ("fp32",)
    assert asked == [expected, expected] and axis["precisions"] == list(expected)
    assert ("mt_uncertainty_bf16" in axis) == native and all(
        ("bf16" in row) == native for row in axis["gemm"]
    )
    share = axis["training_small"]["flops"]["camtl_grouped"]
    # 6 x params x the timed rounds' tokens over their time, not a median time over a mean length
    assert share["model_flops_per_s"] == pytest.approx(6 * 10 * 32 * (4 + 8 + 60) / 3.0)
    report = "\n".join(
        speed_precision.format_precision(axis, {"mt_uncertainty": mtu, "evaluation": evaluation})
    )
    assert ("no native bf16: fp32 alone" in report) != native


def test_the_profile_sums_a_steps_time_by_what_it_spends_it_on(bundled_tokenizer, tmp_path):
    from camtl.data.features import load_features
    from camtl.tasks import TRAINABLE_TASKS

    train_sets = {
        t: load_features(FIXTURES, t, "train", bundled_tokenizer, 128, tmp_path) for t in TRAINABLE_TASKS
    }
    text = speed.profile_step("small", train_sets, bundled_tokenizer.pad_token_id, "fp32", "grouped", steps=1)
    titles = [line for line in text.splitlines() if line.startswith("== ")]
    assert [t.split()[1] for t in titles] == list(speed.CONTENDERS) and "fp32, grouped batches" in titles[0]
    for title in titles:
        summary = text.split(title)[1].splitlines()[1:7]
        shares = {line[:36].strip(): float(line.split()[-1].rstrip("%")) for line in summary}
        assert set(shares) == {group for group, _ in speed_setup.PROFILE_GROUPS} | {"outside aten ops"}
        assert sum(shares.values()) == pytest.approx(100, abs=0.5)
        assert shares["matrix products"] > 10  # an encoder's step is mostly its GEMMs, even this small


@pytest.mark.parametrize(
    ("flags", "native", "message"),
    [
        (["--profile_padding", "grouped"], True, "shape a profile: add --profile small|base"),
        (["--profile", "small", "--profile_precision", "bf16"], False, "no native bf16"),
    ],
)
def test_profile_options_that_cannot_apply_are_refused(flags, native, message, monkeypatch):
    import argparse

    from camtl.errors import UsageError
    from camtl.training.precision import CpuReport

    monkeypatch.setattr(speed, "this_cpu", lambda: CpuReport("a CPU", ("avx512_bf16",) if native else ()))
    parser = argparse.ArgumentParser()
    speed.add_arguments(parser)
    with pytest.raises(UsageError, match=message):
        speed.run(parser.parse_args(["--data_dir", str(FIXTURES), *flags]))
