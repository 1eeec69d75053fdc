"""Whether the contender built first is timed differently: ``python -m investigations.build_order_effect``.

Runs the speed program's 6 x 384 step measurement (CA-MTL and vanilla, batches padded to 128, alternated
in rounds) in fresh processes, alternately with CA-MTL built first and with vanilla built first, and
prints each contender's median step time and the CA-MTL / vanilla ratio under each order.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROUNDS = 10
ORDERS = {"camtl first": "camtl,vanilla", "vanilla first": "vanilla,camtl"}
PROCESSES_PER_ORDER = 2  # A B A B: drift of the shared machine falls on both orders


def child(order: tuple[str, ...]) -> None:
    import torch

    from camtl.bench.speed import measure_feature_cache
    from camtl.bench.speed_report import paired_ratio
    from camtl.bench.speed_training import TrainingMeasurement, time_training_steps
    from camtl.model import load_tokenizer
    from camtl.model.presets import bundled_encoder_path
    from camtl.training.allocator import retain_freed_memory

    retain_freed_memory()
    torch.set_num_threads(2)
    tokenizer = load_tokenizer(bundled_encoder_path())
    with tempfile.TemporaryDirectory() as cache:
        _, train_sets = measure_feature_cache(Path("../shared/glue"), tokenizer, Path(cache), 2000)
        measurement = TrainingMeasurement("small", ("fixed",), ROUNDS, 1, 0, order)
        seconds = time_training_steps(measurement, train_sets, tokenizer.pad_token_id)["seconds"]
    steps = {name: statistics.median(times) for name, times in seconds.items()}
    print(
        json.dumps({"steps": steps, "ratio": paired_ratio(seconds["camtl_fixed"], seconds["vanilla_fixed"])})
    )


def main() -> None:
    runs = {name: [] for name in ORDERS}
    for _ in range(PROCESSES_PER_ORDER):
        for name, order in ORDERS.items():
            process = subprocess.run(
                [sys.executable, "-m", "investigations.build_order_effect", "--child", order],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            runs[name].append(json.loads(process.stdout.strip().splitlines()[-1]))
    print(f"6 x 384 training step, batch 32 padded to 128, {ROUNDS} rounds in each of "
          f"{PROCESSES_PER_ORDER} processes per order")  # fmt: skip
    print(f"{'order':<14} {'camtl_fixed':>12} {'vanilla_fixed':>14}   camtl/vanilla per process")
    for name, results in runs.items():
        camtl, vanilla = (
            statistics.median(r["steps"][s] for r in results) for s in ("camtl_fixed", "vanilla_fixed")
        )
        ratios = ", ".join(f"{r['ratio']:.3f}" for r in results)
        print(f"{name:<14} {camtl:11.3f}s {vanilla:13.3f}s   {ratios}")


if __name__ == "__main__":
    if "--child" in sys.argv:
        child(tuple(sys.argv[sys.argv.index("--child") + 1].split(",")))
    else:
        main()
