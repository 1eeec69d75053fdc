"""``python -m camtl.bench contention``: what sharing the 2-core CPU does to a training step.

Each scenario starts one or two worker processes at once; a worker builds CA-MTL-mini, takes two warm-up
steps and then times ``steps`` training steps (forward, backward, fused AdamW) on one fixed batch of 32
examples of 32 tokens (the length of a length-grouped GLUE batch), with OMP_NUM_THREADS set per worker.
The result is each worker's median seconds per step and the scenario's throughput (steps per second of
all its workers together): one run with 2 threads alone, one with 1 thread, and each beside a twin.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from camtl.bench.common import REPO_ROOT, markdown_table, write_json

# name -> threads of each worker started together
SCENARIOS = {
    "2 threads, alone": (2,),
    "1 thread, alone": (1,),
    "2 threads beside a 2-thread twin": (2, 2),
    "1 thread beside a 1-thread twin": (1, 1),
}
WORKER = """
import json, sys, time, torch
from camtl.bench.speed_setup import build_model, make_optimizer, training_step
torch.manual_seed(0)
model = build_model("small", "base").train()
optimizer = make_optimizer(model)
n = 32
ones = torch.ones(n, 32, dtype=torch.long)
batch = {"input_ids": torch.randint(1000, 20000, (n, 32)), "attention_mask": ones, "token_type_ids": 0 * ones,
         "task_ids": torch.arange(n) % 9, "labels": torch.zeros(n)}
for _ in range(2):
    training_step(model, optimizer, batch)
times = []
for _ in range(int(sys.argv[1])):
    start = time.perf_counter()
    training_step(model, optimizer, batch)
    times.append(time.perf_counter() - start)
print(json.dumps(times))
"""


def run_scenario(threads: tuple[int, ...], steps: int) -> dict:
    """Start one worker per entry of ``threads`` at once; their step times and the joint throughput."""
    load = os.getloadavg()[0]
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(steps)], stdout=subprocess.PIPE, text=True,
                         cwd=REPO_ROOT, env={**os.environ, "OMP_NUM_THREADS": str(t)})
        for t in threads
    ]  # fmt: skip
    times = [json.loads(worker.communicate()[0].strip().splitlines()[-1]) for worker in workers]
    medians = [statistics.median(t) for t in times]
    return {
        "threads": list(threads),
        "median_seconds_per_step": medians,
        "steps_per_second": sum(1 / m for m in medians),
        "load_before": load,
    }


def format_contention(result: dict) -> str:
    rows = [
        [name, " / ".join(f"{m:.2f}" for m in r["median_seconds_per_step"]), f"{r['steps_per_second']:.2f}",
         f"{r['load_before']:.1f}"]
        for name, r in result["scenarios"].items()
    ]  # fmt: skip
    header = ["scenario", "median s/step of each worker", "steps/s, all workers", "load before"]
    lines = [
        "# Sharing the CPU: one training step of CA-MTL-mini, batch 32 x 32 tokens",
        "",
        *markdown_table(header, rows),
        "",
        f"{result['steps']} timed steps per worker after 2 warm-up steps; made by `{result['command']}`.",
    ]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--output", type=Path, default=Path("results/diagnosis/contention"))


def run(args: argparse.Namespace, command: str) -> None:
    result = {
        "steps": args.steps,
        "command": command,
        "started": time.strftime("%Y-%m-%d %H:%M"),
        "scenarios": {},
    }
    for name, threads in SCENARIOS.items():
        result["scenarios"][name] = run_scenario(threads, args.steps)
        print(f"[contention] {name}: {result['scenarios'][name]['median_seconds_per_step']}", flush=True)
    write_json(args.output.with_suffix(".json"), result)
    args.output.with_suffix(".md").write_text(format_contention(result))
    print(format_contention(result))
