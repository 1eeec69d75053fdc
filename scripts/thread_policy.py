"""What a shared CPU costs a training step, per OpenMP wait policy: ``python -m scripts.thread_policy``.

Each condition runs in a fresh process (the policy is read when torch loads OpenMP): the CA-MTL-mini
training step (batch 32 x 64 tokens, 2 threads) alone, and beside a competitor that keeps one core
busy. A competitor that takes one of two cores can at most double a step's time (its lost share);
ACTIVE spinning threads lose far more. Writes results/threads.txt.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

STEP = """
import time, torch
from camtl.bench import device
torch.set_num_threads(2)
shape = device.Shape(layers=6, hidden=384, heads=12, batch=32, seq=64, steps={steps})
cpu = torch.device("cpu")
step = device.make_step(device.build(shape, "base", cpu), "fp32", cpu)
batch = device.random_batch(shape, cpu)
print(device.time_steps(step, batch, shape.steps, cpu))
"""


def step_seconds(policy: str, competitor: bool, steps: int) -> float:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if competitor else None
    try:
        env = {**os.environ, "OMP_WAIT_POLICY": policy}
        output = subprocess.run(
            [sys.executable, "-c", STEP.format(steps=steps)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return float(output.stdout.strip().splitlines()[-1])
    finally:
        if busy is not None:
            busy.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path("results/threads.txt"))
    args = parser.parse_args()
    conditions = [(policy, competitor) for policy in ("ACTIVE", "PASSIVE") for competitor in (False, True)]
    times = {condition: [] for condition in conditions}
    for _ in range(args.rounds):  # interleaved, so that drifts of the machine's load hit every condition
        for condition in conditions:
            times[condition].append(step_seconds(*condition, args.steps))
    median = {condition: statistics.median(values) for condition, values in times.items()}
    lines = [
        f"CA-MTL-mini training step, batch 32 x 64 tokens, 2 threads; median of {args.rounds} processes x"
        f" {args.steps} steps (load average at the end: {os.getloadavg()[0]:.2f})",
        f"{'OMP_WAIT_POLICY':<16}{'alone (s)':>10}{'one core busy (s)':>19}{'slowdown':>10}",
    ]
    for policy in ("ACTIVE", "PASSIVE"):
        alone, shared = median[(policy, False)], median[(policy, True)]
        lines.append(f"{policy:<16}{alone:>10.3f}{shared:>19.3f}{shared / alone:>9.2f}x")
    lines.append(f"PASSIVE / ACTIVE alone: {median[('PASSIVE', False)] / median[('ACTIVE', False)]:.3f}")
    report = "\n".join(lines)
    args.output.write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
