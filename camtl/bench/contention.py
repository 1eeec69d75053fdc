"""``python -m camtl.bench contention``: what sharing the 2-core CPU does to a training step.

Each scenario starts one or two worker processes at once; a worker builds CA-MTL-mini, takes two warm-up
steps and then times ``steps`` training steps (forward, backward, fused AdamW) on one fixed batch of 32
examples of 32 tokens (the length of a length-grouped GLUE batch), with OMP_NUM_THREADS set per worker.
The result is each worker's median seconds per step and the scenario's throughput (steps per second of
all its workers together): one run with 2 threads alone, one with 1 thread, and each beside a twin; then
2 threads beside a process that keeps one core busy, under each OpenMP wait policy (camtl sets PASSIVE
unless OMP_WAIT_POLICY is set: ACTIVE threads spin on the busy core; see camtl/__init__.py).
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
from typing import NamedTuple

from camtl.bench.common import REPO_ROOT, markdown_table, write_json


class Scenario(NamedTuple):
    threads: tuple[int, ...]  # OMP_NUM_THREADS of each worker started together
    wait_policy: str = "PASSIVE"
    busy_core: bool = False  # beside a process that spins on one core for the whole scenario


SCENARIOS = {
    "2 threads, alone": Scenario((2,)),
    "1 thread, alone": Scenario((1,)),
    "2 threads beside a 2-thread twin": Scenario((2, 2)),
    "1 thread beside a 1-thread twin": Scenario((1, 1)),
    "2 threads, ACTIVE wait policy, alone": Scenario((2,), "ACTIVE"),
    "2 threads, ACTIVE wait policy, one core busy": Scenario((2,), "ACTIVE", busy_core=True),
    "2 threads, PASSIVE wait policy, one core busy": Scenario((2,), "PASSIVE", busy_core=True),
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


def run_scenario(scenario: Scenario, steps: int) -> dict:
    """A worker per entry of ``scenario.threads``, started at once; their step times and joint throughput."""
    load = os.getloadavg()[0]
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if scenario.busy_core else None
    try:
        env = {**os.environ, "OMP_WAIT_POLICY": scenario.wait_policy}
        workers = [
            subprocess.Popen([sys.executable, "-c", WORKER, str(steps)], stdout=subprocess.PIPE, text=True,
                             cwd=REPO_ROOT, env={**env, "OMP_NUM_THREADS": str(t)})
            for t in scenario.threads
        ]  # fmt: skip
        times = [json.loads(worker.communicate()[0].strip().splitlines()[-1]) for worker in workers]
    finally:
        if busy is not None:
            busy.kill()
    medians = [statistics.median(t) for t in times]
    return {
        **scenario._asdict(),
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
        "Wait policy PASSIVE (camtl's default) unless the scenario says otherwise.",
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
