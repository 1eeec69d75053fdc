"""The speed program's precision axis: fp32 against bf16 autocast, and the machine's physical limit.

In the same run as the rest of ``camtl.bench speed``: the CA-MTL and vanilla training steps at both
shapes on length-grouped batches (the default run's), fp32 and bf16 alternating in the same rounds; the
MT-Uncertainty step and evaluation in bf16 (their fp32 times are the program's own); and the GEMM rate of
each precision at 1 and 2 threads. Each training step's model FLOP/s (6 x non-embedding parameters x
padded tokens) is given as a fraction of its precision's GEMM rate at the step's thread count. A CPU
without native bf16 gets fp32 alone, and the report says so.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from camtl.bench.precision_bench import gemm_table
from camtl.bench.speed_setup import BATCH_SIZE, CONTENDERS, THREADS, build_model, non_embedding_parameters
from camtl.bench.speed_training import step_name
from camtl.training.precision import this_cpu

GEMM_SIZE = 2048
GEMM_THREADS = (1, 2)
PADDING = "grouped"


def model_parameters(shape: str) -> dict[str, int]:
    """Non-embedding parameters of each contender at ``shape`` (the FLOPs count of its step)."""
    return {name: non_embedding_parameters(build_model(shape, layout)) for name, layout in CONTENDERS.items()}


def flop_shares(training: dict, parameters: dict[str, int], gemm: dict[str, float], precisions) -> dict:
    """Model FLOP/s of each timed step and its fraction of the GEMM rate of its precision: the FLOPs of
    all timed rounds over their summed time (grouped batches range from a few tokens to 128, so a
    median time over a mean length would not describe one step)."""
    tokens = BATCH_SIZE * sum(training["timed_padded_lengths"][PADDING])
    shares = {}
    for precision in precisions:
        for name in CONTENDERS:
            step = step_name(name, PADDING, precision)
            rate = 6 * parameters[name] * tokens / sum(training["steps"][step]["seconds"])
            shares[step] = {"model_flops_per_s": rate, "fraction_of_gemm": rate / gemm[precision]}
    return shares


def measure_precision_axis(
    measure_training: Callable[..., dict],
    measure_mt_uncertainty: Callable[..., dict],
    measure_evaluation: Callable[..., dict],
    rounds: dict[str, int],
    log: Callable[[str], None],
) -> dict:
    """The precision axis; the three measurements are the speed program's own, given a precision."""
    cpu = this_cpu()
    precisions = ("fp32", "bf16") if cpu.native_bf16 else ("fp32",)
    result = {"cpu": cpu.name, "native_bf16_flags": list(cpu.bf16_flags), "precisions": list(precisions)}
    log(f"GEMM rates ({', '.join(precisions)})")
    result["gemm"] = gemm_table((GEMM_SIZE,), GEMM_THREADS, 0.5, precisions)
    torch.set_num_threads(THREADS)
    at_step_threads = next(row for row in result["gemm"] if row["threads"] == THREADS)
    for shape in ("small", "base"):
        log(f"training steps in {' and '.join(precisions)}, {shape}, {PADDING} batches")
        training = measure_training(shape, rounds[shape], (PADDING,), precisions=precisions)
        training["flops"] = flop_shares(training, model_parameters(shape), at_step_threads, precisions)
        result[f"training_{shape}"] = training
    if "bf16" in precisions:
        log("MT-Uncertainty step in bf16")
        result["mt_uncertainty_bf16"] = measure_mt_uncertainty("bf16")
        log("evaluation in bf16")
        result["evaluation_bf16"] = measure_evaluation("bf16")
    return result


def precision_ratios(axis: dict) -> dict[str, float]:
    """The published ratios of the axis: CA-MTL / vanilla in bf16, fp32 / bf16 time per contender."""
    ratios = {}
    for shape in ("small", "base"):
        measured = axis[f"training_{shape}"]["ratios"]
        for name, value in measured.items():
            ratios[f"{shape}_{name}"] = value
    if "mt_uncertainty_bf16" in axis:
        ratios["mtu_vs_floor_bf16"] = axis["mt_uncertainty_bf16"]["ratios"]["mtu_vs_floor"]
        ratios["evaluation_camtl_vs_vanilla_time_bf16"] = axis["evaluation_bf16"]["camtl_vs_vanilla"]
    return ratios


def format_precision(axis: dict, fp32: dict) -> list[str]:
    """The axis as report lines; ``fp32`` holds the program's fp32 MT-U and evaluation results."""
    flags = ", ".join(axis["native_bf16_flags"]) or "none"
    lines = ["", f"precision axis on {axis['cpu']}: native-bf16 flags {flags}"]
    if "bf16" not in axis["precisions"]:
        lines.append("this CPU has no native bf16: fp32 alone measured (bf16 would be emulated)")
    lines.append(f"GEMM {GEMM_SIZE} x {GEMM_SIZE}, GFLOP/s: " + "; ".join(
        f"{row['threads']} thread(s) " + ", ".join(f"{p} {row[p] / 1e9:.0f}" for p in axis["precisions"])
        for row in axis["gemm"]
    ))  # fmt: skip
    lines.append(
        f"{'shape':<7}{'step':<24}{'padded len':>11}{'median s':>10}{'model GFLOP/s':>15}{'of GEMM':>9}"
    )
    for shape in ("small", "base"):
        training = axis[f"training_{shape}"]
        timed = training["timed_padded_lengths"][PADDING]  # the batches the FLOPs are counted over
        for step, share in training["flops"].items():
            lines.append(
                f"{shape:<7}{step:<24}{sum(timed) / len(timed):>11.1f}"
                f"{training['steps'][step]['median_s']:>10.3f}{share['model_flops_per_s'] / 1e9:>15.1f}"
                f"{share['fraction_of_gemm']:>9.0%}"
            )
    if "mt_uncertainty_bf16" in axis:
        mtu, evaluation = axis["mt_uncertainty_bf16"], axis["evaluation_bf16"]
        lines += [
            f"MT-Uncertainty step: fp32 {fp32['mt_uncertainty']['steps']['mtu_step']['median_s']:.3f} s,"
            f" bf16 {mtu['steps']['mtu_step']['median_s']:.3f} s",
            f"evaluation, CA-MTL: fp32 {fp32['evaluation']['camtl']['examples_per_s']:.1f} ex/s,"
            f" bf16 {evaluation['camtl']['examples_per_s']:.1f} ex/s",
        ]
    return lines
