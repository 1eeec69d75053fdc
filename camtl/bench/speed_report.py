"""The speed program's arithmetic and report: steps alternated in rounds, paired ratios and their quartiles,
the targets, and the fixed-width tables of ``results/speed.txt``."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

WARMUP_ROUNDS = 1

TARGETS = {  # ratio -> (comparison, bound)
    "camtl_vs_vanilla_small": ("<=", 1.05),
    "camtl_vs_vanilla_base": ("<=", 1.05),
    "mtu_vs_floor": ("<=", 1.10),
    "dynamic_vs_fixed_padding": (">=", 2.0),
    "grouped_vs_fixed_padding": (">=", 2.0),  # the same target with --train_sampling_strategy group_by_length
    "small_camtl_vs_vanilla_grouped_bf16": ("<=", 1.05),  # as in fp32
    "base_camtl_vs_vanilla_grouped_bf16": ("<=", 1.05),
}


# ---------------------------------------------------------------------------------------------------------
# Timing and ratios


def alternate(steps: dict[str, Callable[[int], object]], rounds: int, warmup: int = WARMUP_ROUNDS):
    """Run every step once per round (``step(round_index)``), the order reversed every other round.

    Returns the seconds of each step per round, warm-up rounds left out.
    """
    names = list(steps)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(warmup + rounds):
        for name in names if round_index % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            steps[name](round_index)
            if round_index >= warmup:
                seconds[name].append(time.perf_counter() - start)
    return seconds


def paired_ratios(numerator: list[float], denominator: list[float]) -> list[float]:
    """numerator_i / denominator_i for each round: two times taken in the same round."""
    if not numerator or len(numerator) != len(denominator):
        raise ValueError("paired ratios need two equally long, non-empty lists of times")
    return [a / b for a, b in zip(numerator, denominator, strict=True)]


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over rounds of the paired ratios."""
    return statistics.median(paired_ratios(numerator, denominator))


def paired_ratio_quartiles(numerator: list[float], denominator: list[float]) -> tuple[float, float]:
    """First and third quartiles of the paired ratios: how far the rounds disagree."""
    ratios = paired_ratios(numerator, denominator)
    if len(ratios) == 1:
        return ratios[0], ratios[0]
    first, _, third = statistics.quantiles(ratios, n=4, method="inclusive")
    return first, third


def compare(pairs: dict[str, tuple[list[float], list[float]]]) -> tuple[dict, dict]:
    """For each named (numerator times, denominator times): the paired ratio and its quartiles."""
    ratios = {name: paired_ratio(*times) for name, times in pairs.items()}
    quartiles = {name: paired_ratio_quartiles(*times) for name, times in pairs.items()}
    return ratios, quartiles


def summarize_times(seconds: list[float], examples: int) -> dict:
    median = statistics.median(seconds)
    return {
        "median_s": median,
        "min_s": min(seconds),
        "max_s": max(seconds),
        "rounds": len(seconds),
        "examples_per_s": examples / median,
        "seconds": seconds,
    }


def check_targets(ratios: dict[str, float]) -> dict[str, dict]:
    """Each target ratio with its bound and whether it is met (ratios not measured are left out)."""
    checked = {}
    for name, (comparison, bound) in TARGETS.items():
        if name in ratios:
            value = ratios[name]
            met = value <= bound if comparison == "<=" else value >= bound
            checked[name] = {"value": value, "target": f"{comparison} {bound}", "met": met}
    return checked


TRAINING_RATIOS = {  # published ratio -> (shape, ratio of measure_training_steps)
    "camtl_vs_vanilla_small": ("small", "camtl_vs_vanilla_fixed"),
    "camtl_vs_vanilla_small_dynamic": ("small", "camtl_vs_vanilla_dynamic"),
    "camtl_vs_vanilla_base": ("base", "camtl_vs_vanilla_fixed"),
    "camtl_vs_vanilla_base_dynamic": ("base", "camtl_vs_vanilla_dynamic"),
    "dynamic_vs_fixed_padding": ("small", "dynamic_vs_fixed_camtl"),
    "dynamic_vs_fixed_padding_vanilla": ("small", "dynamic_vs_fixed_vanilla"),
    "grouped_vs_fixed_padding": ("small", "grouped_vs_fixed_camtl"),
    "grouped_vs_fixed_padding_vanilla": ("small", "grouped_vs_fixed_vanilla"),
}


def collect_ratios(result: dict) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Every published ratio, and the quartiles of the per-round ratios for those timed in rounds."""
    ratios, quartiles = {}, {}
    for name, (shape, measured) in TRAINING_RATIOS.items():
        training = result[f"training_{shape}"]
        if measured in training["ratios"]:
            ratios[name] = training["ratios"][measured]
            quartiles[name] = training["ratio_quartiles"][measured]
    ratios.update(result["mt_uncertainty"]["ratios"])
    quartiles.update(result["mt_uncertainty"]["ratio_quartiles"])
    ratios["evaluation_camtl_vs_vanilla_time"] = result["evaluation"]["camtl_vs_vanilla"]
    for shape in ("small", "base"):
        if shape in result["memory"]:
            ratios[f"memory_peak_camtl_vs_vanilla_{shape}"] = result["memory"][shape]["peak_camtl_vs_vanilla"]
            ratios[f"memory_step_camtl_vs_vanilla_{shape}"] = result["memory"][shape]["step_camtl_vs_vanilla"]
    return ratios, quartiles


def format_report(result: dict) -> str:
    """The result as fixed-width tables: medians, examples/s and the ratios with their targets."""
    lines = [
        f"camtl speed on {result['machine']['cpu']}, {result['machine']['threads']} threads,"
        f" torch {result['machine']['torch']}{' (quick)' if result['quick'] else ''};"
        f" load average {result['machine']['load_average_at_start'][0]:.1f} at start,"
        f" {result['machine']['load_average_at_end'][0]:.1f} at end",
        "",
        f"training step, batch {result['batch_size']} mixed-task examples (forward, backward, AdamW)",
        f"{'shape':<7}{'contender':<20}{'padded len':>11}{'median s':>10}{'ex/s':>8}{'rounds':>8}",
    ]
    for shape in ("small", "base"):
        training = result[f"training_{shape}"]
        for name, times in training["steps"].items():
            padding = name.rsplit("_", 1)[1]
            lines.append(
                f"{shape:<7}{name:<20}{training['mean_padded_length'][padding]:>11.1f}"
                f"{times['median_s']:>10.3f}{times['examples_per_s']:>8.1f}{times['rounds']:>8}"
            )
    mtu = result["mt_uncertainty"]
    lines += [
        "",
        f"MT-Uncertainty, 6 x 384, T = {mtu['tasks']}, {mtu['candidates_per_step']} candidates per step;"
        f" floor = pool_forward + mtu_training_part = {mtu['floor_median_s']:.3f} s",
        f"{'step':<20}{'median s':>10}{'rounds':>8}",
    ]
    lines += [f"{name:<20}{t['median_s']:>10.3f}{t['rounds']:>8}" for name, t in mtu["steps"].items()]
    evaluation, cache = result["evaluation"], result["feature_cache"]
    lines += [
        "",
        f"evaluation, {evaluation['examples']} dev examples over {evaluation['tasks']} dev sets:"
        f" CA-MTL {evaluation['camtl']['examples_per_s']:.1f} ex/s,"
        f" vanilla {evaluation['vanilla']['examples_per_s']:.1f} ex/s",
        f"feature cache, {cache['examples']} examples in {cache['splits']} splits:"
        f" tokenize cold {cache['cold_s']:.1f} s ({cache['cold_examples_per_s']:.0f} ex/s),"
        f" reload {cache['reload_s']:.2f} s ({cache['reload_examples_per_s']:.0f} ex/s)",
        "",
        f"memory: {result['memory']['method']}",
    ]
    for shape in ("small", "base"):
        if shape in result["memory"]:
            memory = result["memory"][shape]
            parts = [
                f"{name} peak {memory[name]['peak_rss_mib']:.0f} MiB"
                f" (step {memory[name]['step_mib']:.0f} MiB)"
                for name in ("camtl", "vanilla")
            ]
            lines.append(f"{shape:<7}" + "  ".join(parts))
    lines += ["", f"{'ratio (median of paired rounds)':<38}{'value':>8}  {'quartiles':<15}target"]
    for name, value in result["ratios"].items():
        target = result["targets"].get(name)
        verdict = f"{target['target']}  {'met' if target['met'] else 'MISSED'}" if target else ""
        first, third = result["ratio_quartiles"].get(name, (None, None))
        spread = f"{first:.3f}-{third:.3f}" if first is not None else ""
        lines.append(f"{name:<38}{value:>8.3f}  {spread:<15}{verdict}".rstrip())
    return "\n".join(lines)
