"""``python -m camtl.bench precision``: what bf16 costs and gains here, and what ``--precision auto`` picks.

Measured in one run and written to ``results/precision/<cpu>.md`` (and ``.json``), one file per CPU model
(machines differ between sessions):

- what the CPU reports: its model name and native-bf16 flags (``camtl.training.precision``);
- the physical limit: fp32 and bf16 GEMM rates (square matmuls) at 1 and 2 threads;
- bf16 without its instructions: the same GEMMs in a child process whose oneDNN is held below them
  (``ONEDNN_MAX_CPU_ISA=AVX512_CORE``), i.e. what a CPU without native bf16 runs (x86 with AVX-512 only);
- the training step of CA-MTL-mini (the bundled encoder, base layout, batch 32 x 64 tokens, fused AdamW)
  in fp32 and under bf16 autocast, alternating in one process, with its model FLOP/s (6 x non-embedding
  parameters x tokens) as a fraction of the GEMM rate of its precision;
- what ``--precision auto`` chooses at each thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import torch

from camtl.bench.common import markdown_table, write_json
from camtl.bench.device import TASKS, Shape, random_batch
from camtl.bench.speed_report import alternate, paired_ratio
from camtl.bench.speed_setup import (
    build_model,
    make_optimizer,
    model_inputs,
    non_embedding_parameters,
    training_step,
)
from camtl.training.precision import BF16_MIN_SPEEDUP, DTYPES, choose_precision, gemm_rate, this_cpu

# oneDNN's ISA cap without the AVX512_BF16 / AMX instructions, for the emulated-bf16 child.
EMULATED_ISA = "AVX512_CORE"
STEP_SHAPE = Shape(layers=6, hidden=384, heads=12, batch=32, seq=64, steps=0)


def gemm_table(
    sizes: tuple[int, ...],
    threads: tuple[int, ...],
    seconds: float,
    precisions: tuple[str, ...] = ("fp32", "bf16"),
) -> list[dict]:
    """FLOP/s of square matmuls per thread count, size and precision (and bf16 / fp32 where both ran)."""
    rows = []
    for count in threads:
        torch.set_num_threads(count)
        for size in sizes:
            row = {"threads": count, "size": size}
            row |= {precision: gemm_rate(DTYPES[precision], size, seconds) for precision in precisions}
            if "bf16" in row:
                row["bf16_vs_fp32"] = row["bf16"] / row["fp32"]
            rows.append(row)
    return rows


def emulated_gemms(sizes: tuple[int, ...], seconds: float) -> dict:
    """The GEMM table at 1 thread in a child whose oneDNN may not use the bf16 instructions."""
    if not torch.cpu.get_capabilities().get("avx512_f"):
        return {"measured": False, "reason": f"oneDNN's {EMULATED_ISA} cap needs an x86 CPU with AVX-512"}
    code = (
        "import json, sys; from camtl.bench.precision_bench import gemm_table;"
        f" print(json.dumps(gemm_table({sizes!r}, (1,), {seconds})))"
    )
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": EMULATED_ISA}
    child = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return {"measured": True, "isa": EMULATED_ISA, "rows": json.loads(child.stdout.splitlines()[-1])}


def training_steps(threads: tuple[int, ...], rounds: int) -> list[dict]:
    """fp32 and bf16-autocast steps of one CA-MTL-mini model, alternating, per thread count."""
    model = build_model("small", "base", tuple(TASKS))
    optimizer = make_optimizer(model)
    batch = model_inputs(random_batch(STEP_SHAPE, torch.device("cpu")))
    tokens = batch["input_ids"].numel()
    body = non_embedding_parameters(model)
    flops = 6 * body * tokens

    def step(precision: str):
        return lambda _: training_step(model, optimizer, batch, precision)

    rows = []
    for count in threads:
        torch.set_num_threads(count)
        seconds = alternate({"fp32": step("fp32"), "bf16": step("bf16")}, rounds)
        median = {name: sorted(times)[len(times) // 2] for name, times in seconds.items()}
        rows.append(
            {
                "threads": count,
                "seconds": median,
                "bf16_vs_fp32": paired_ratio(seconds["fp32"], seconds["bf16"]),  # > 1: bf16 faster
                "model_flops_per_second": {name: flops / s for name, s in median.items()},
                "tokens": tokens,
                "non_embedding_parameters": body,
            }
        )
    return rows


def measure(quick: bool) -> dict:
    sizes, threads = ((256,), (1,)) if quick else ((1024, 2048), (1, 2))
    seconds, rounds = (0.01, 1) if quick else (0.3, 8)
    cpu = this_cpu()
    gemms = gemm_table(sizes, threads, seconds)
    choices = {}
    for count in threads:
        torch.set_num_threads(count)
        choices[count] = choose_precision("auto", "cpu").record()
    return {
        "cpu": cpu.name,
        "native_bf16_flags": list(cpu.bf16_flags),
        "torch": torch.__version__,
        "gemm": gemms,
        "emulated_gemm": emulated_gemms(sizes, seconds),
        "training_step": training_steps(threads, rounds),
        "auto": choices,
        "command": "python -m camtl.bench precision" + (" --quick" if quick else ""),
    }


def gflops(value: float) -> str:
    return f"{value / 1e9:.0f}"


def gemm_markdown(rows: list[dict]) -> list[str]:
    """A GEMM table (GFLOP/s per thread count and size) as markdown lines."""
    cells = [
        [r["threads"], r["size"], gflops(r["fp32"]), gflops(r["bf16"]), f"{r['bf16_vs_fp32']:.2f}"]
        for r in rows
    ]
    return markdown_table(["threads", "size", "fp32", "bf16", "bf16 / fp32"], cells)


def format_report(result: dict) -> str:
    flags = ", ".join(result["native_bf16_flags"]) or "none"
    lines = [
        "# Precision on this CPU: fp32 and bf16", "",
        f"CPU: {result['cpu']}; native-bf16 flags PyTorch reports: {flags}; torch {result['torch']}.", "",
        *([] if result["native_bf16_flags"] else [
            "This CPU has no native bf16: every bf16 column below is what emulating it costs here.", ""]),
        "GEMM (square matmul), GFLOP/s:", "",
        *gemm_markdown(result["gemm"]), "",
    ]  # fmt: skip
    emulated = result["emulated_gemm"]
    if emulated["measured"]:
        lines += [
            f"Without the bf16 instructions (oneDNN capped at {emulated['isa']}, as on a CPU without native"
            " bf16), GFLOP/s:", "",
            *gemm_markdown(emulated["rows"]), "",
        ]  # fmt: skip
    else:
        lines += [f"bf16 without its instructions: not measurable here ({emulated['reason']}).", ""]
    step_rows = []
    for r in result["training_step"]:
        gemm = {g["size"]: g for g in result["gemm"] if g["threads"] == r["threads"]}
        largest = gemm[max(gemm)]
        share = {p: r["model_flops_per_second"][p] / largest[p] for p in ("fp32", "bf16")}
        rate = {p: f"{gflops(r['model_flops_per_second'][p])} ({share[p]:.0%})" for p in share}
        seconds = r["seconds"]
        step_rows.append(
            [r["threads"], f"{seconds['fp32']:.3f}", f"{seconds['bf16']:.3f}", f"{r['bf16_vs_fp32']:.2f}",
             rate["fp32"], rate["bf16"]]
        )  # fmt: skip
    lines += [
        "Training step of CA-MTL-mini (base layout on the bundled 6 x 384 encoder), batch 32 x 64 tokens,"
        " fused AdamW; median seconds, the paired fp32 / bf16 ratio (above 1: bf16 faster), and model"
        " GFLOP/s (6 x non-embedding parameters x tokens) with its share of the largest GEMM's rate:", "",
        *markdown_table(
            ["threads", "fp32 s", "bf16 s", "fp32 / bf16", "fp32 GFLOP/s", "bf16 GFLOP/s"], step_rows
        ),
        "",
        f"`--precision auto` takes bf16 where the CPU has native bf16 and its GEMM is at least"
        f" {BF16_MIN_SPEEDUP}x fp32's:",
        *(f"- {n} thread(s): **{c['precision']}** ({c['reason']})" for n, c in result["auto"].items()),
        "", "Made by:", "", f"    {result['command']}",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def cpu_slug() -> str:
    """This CPU's model name and the vector ISA PyTorch uses on it, as a file name: ``Intel(R) Xeon(R)
    Processor`` with AVX-512 -> ``intel-xeon-processor-avx512``. One model name covers CPUs with and
    without AVX-512 (both AMD EPYC here), whose bf16 answers differ."""
    name = re.sub(r"\((r|tm)\)", "", this_cpu().name.lower())
    isa = torch.backends.cpu.get_cpu_capability().lower()
    return "-".join(re.sub(r"[^a-z0-9]+", "-", part).strip("-") for part in (name or "cpu", isa))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a few seconds: tiny GEMMs, one round")
    parser.add_argument("--output", type=Path, default=None, help="default results/precision/<cpu>.md")


def run(args: argparse.Namespace) -> None:
    result = measure(args.quick)
    report = format_report(result)
    quick = Path("output/precision-quick.md")
    output = args.output or (quick if args.quick else Path("results/precision") / f"{cpu_slug()}.md")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report)
    write_json(output.with_suffix(".json"), result)
    print(report, end="")
