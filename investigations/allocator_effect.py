"""What keeping freed host memory does to a training step: ``python -m investigations.allocator_effect``.

Runs the speed program's 6 x 384 step measurement (CA-MTL and vanilla, batches padded to 128 and
length-grouped batches, alternated in rounds) in fresh processes, alternately with glibc's default
(``CAMTL_RETAIN_FREED_MEMORY=0``) and with camtl's setting (camtl/training/allocator.py), and prints each
contender's median step time and the CA-MTL / vanilla ratio under each setting.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PADDINGS = ("fixed", "grouped")
ROUNDS = 10
SETTINGS = {"glibc default": "0", "retained (camtl)": "1"}
PROCESSES_PER_SETTING = 2  # A B A B: drift of the shared machine falls on both settings


def child() -> None:
    import torch

    from camtl.bench.speed import measure_feature_cache
    from camtl.bench.speed_report import paired_ratio
    from camtl.bench.speed_training import BUILD_ORDERS, TrainingMeasurement, time_training_steps
    from camtl.model import load_tokenizer
    from camtl.model.presets import bundled_encoder_path
    from camtl.training.allocator import retain_freed_memory

    retained = retain_freed_memory()
    torch.set_num_threads(2)
    tokenizer = load_tokenizer(bundled_encoder_path())
    with tempfile.TemporaryDirectory() as cache:
        _, train_sets = measure_feature_cache(Path("../shared/glue"), tokenizer, Path(cache), 2000)
        measurement = TrainingMeasurement("small", PADDINGS, ROUNDS, 1, 0, BUILD_ORDERS[0])
        seconds = time_training_steps(measurement, train_sets, tokenizer.pad_token_id)["seconds"]
    steps = {name: statistics.median(times) for name, times in seconds.items()}
    ratios = {
        f"camtl_vs_vanilla_{p}": paired_ratio(seconds[f"camtl_{p}"], seconds[f"vanilla_{p}"])
        for p in PADDINGS
    }
    print(json.dumps({"retained": retained, "steps": steps, "ratios": ratios}))


def main() -> None:
    runs = {name: [] for name in SETTINGS}
    for _ in range(PROCESSES_PER_SETTING):
        for name, value in SETTINGS.items():
            env = {**os.environ, "CAMTL_RETAIN_FREED_MEMORY": value}
            process = subprocess.run(
                [sys.executable, "-m", "investigations.allocator_effect", "--child"],
                env=env, capture_output=True, text=True, check=True,
            )  # fmt: skip
            runs[name].append(json.loads(process.stdout.strip().splitlines()[-1]))
    print(f"6 x 384 training step, batch 32, {ROUNDS} rounds in each of {PROCESSES_PER_SETTING} processes")
    steps = [f"{contender}_{padding}" for padding in PADDINGS for contender in ("camtl", "vanilla")]
    print(f"{'setting':<18} " + " ".join(f"{s:>16}" for s in steps) + "   camtl/vanilla fixed, grouped")
    for name, results in runs.items():
        medians = [statistics.median(r["steps"][s] for r in results) for s in steps]
        ratios = [statistics.median(r["ratios"][f"camtl_vs_vanilla_{p}"] for r in results) for p in PADDINGS]
        print(f"{name:<18} " + " ".join(f"{m:15.3f}s" for m in medians) + "   "
              + ", ".join(f"{r:.3f}" for r in ratios))  # fmt: skip


if __name__ == "__main__":
    if "--child" in sys.argv:
        child()
    else:
        main()
