"""The speed program's training-step comparison: CA-MTL and vanilla alternated in rounds, in fresh processes
that build the two contenders in opposite orders.

Which model is built first changes where its tensors sit in memory, and that alone moved the 6 x 384
ratio by about 3 points (``python -m investigations.build_order_effect``,
investigations/build-order-effect.txt).
So each comparison pools one process per build order, half the rounds in each; a ratio is still the
median of paired rounds, each pair timed in one process.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from camtl.bench.speed_report import WARMUP_ROUNDS, alternate, compare, paired_ratio, summarize_times
from camtl.bench.speed_setup import (
    BATCH_SIZE,
    CONTENDERS,
    MAX_SEQ_LENGTH,
    PADDINGS,
    REPO_ROOT,
    THREADS,
    build_model,
    drawn_batches,
    make_optimizer,
    model_inputs,
    training_step,
)
from camtl.data.collation import MultiTaskCollator, sequence_lengths
from camtl.data.features import TaskFeatures, load_features
from camtl.model import load_tokenizer
from camtl.model.presets import bundled_encoder_path
from camtl.tasks import TRAINABLE_TASKS
from camtl.training.allocator import retain_freed_memory

BUILD_ORDERS = (tuple(CONTENDERS), tuple(reversed(CONTENDERS)))


@dataclass(frozen=True)
class TrainingMeasurement:
    """What a child process times: a shape, its paddings, ``rounds`` after ``warmup`` from ``first_batch``."""

    shape: str
    paddings: tuple[str, ...]
    rounds: int
    warmup: int
    first_batch: int
    build_order: tuple[str, ...]
    precisions: tuple[str, ...] = ("fp32",)


def step_name(contender: str, padding: str, precision: str = "fp32") -> str:
    """``camtl_fixed``; other precisions than fp32 are named: ``camtl_grouped_bf16``."""
    return f"{contender}_{padding}" + ("" if precision == "fp32" else f"_{precision}")


FeatureSource = tuple[
    str, str, "int | None"
]  # GLUE folder, the feature cache the parent filled, cap per split


def time_training_steps(
    measurement: TrainingMeasurement, train_sets: dict[str, TaskFeatures], pad_token_id: int
) -> dict:
    """Seconds of each contender's step per round, for each padding, on the same mixed-task batches."""
    m = measurement
    models = {name: build_model(m.shape, CONTENDERS[name]) for name in m.build_order}
    optimizers = {name: make_optimizer(model) for name, model in models.items()}
    count = m.first_batch + m.warmup + m.rounds
    draws = {  # fixed and dynamic padding collate the same draw
        grouped: drawn_batches(train_sets, "proportional", count, grouped)[m.first_batch :]
        for grouped in {PADDINGS[padding][1] for padding in m.paddings}
    }
    batches = {
        padding: [model_inputs(MultiTaskCollator(pad_token_id, PADDINGS[padding][0])(e))
                  for e in draws[PADDINGS[padding][1]]]
        for padding in m.paddings
    }  # fmt: skip

    def step(name: str, padding: str, precision: str) -> Callable[[int], None]:
        return lambda i: training_step(models[name], optimizers[name], batches[padding][i], precision)

    steps = {
        step_name(name, padding, precision): step(name, padding, precision)
        for precision in m.precisions
        for padding in m.paddings
        for name in CONTENDERS
    }
    return {
        "seconds": alternate(steps, m.rounds, m.warmup),
        "padded_lengths": {p: [b["input_ids"].shape[1] for b in batches[p]] for p in m.paddings},
        "example_lengths": [float(sequence_lengths(b).float().mean()) for b in batches[m.paddings[0]]],
    }


def training_child(measurement: dict, features: FeatureSource) -> None:
    """Runs in a fresh process: loads the train sets from the cache, prints time_training_steps as JSON."""
    retain_freed_memory()
    torch.set_num_threads(THREADS)
    tokenizer = load_tokenizer(bundled_encoder_path())
    data_dir, cache_dir, max_examples = features
    train_sets = {
        task: load_features(
            Path(data_dir), task, "train", tokenizer, MAX_SEQ_LENGTH, Path(cache_dir), max_examples
        )
        for task in TRAINABLE_TASKS
    }
    timed = time_training_steps(TrainingMeasurement(**measurement), train_sets, tokenizer.pad_token_id)
    print(json.dumps(timed))


def run_child(measurement: TrainingMeasurement, features: FeatureSource) -> dict:
    call = f"training_child({asdict(measurement)!r}, {features!r})"  # tuples stay tuples through repr
    code = f"from camtl.bench.speed_training import training_child; {call}"
    process = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=False
    )
    if process.returncode != 0:
        raise RuntimeError(f"training-step child {measurement} failed:\n{process.stderr[-2000:]}")
    return json.loads(process.stdout.strip().splitlines()[-1])


def measure_training_steps(
    shape: str,
    rounds: int,
    paddings: tuple[str, ...],
    features: FeatureSource,
    warmup: int = WARMUP_ROUNDS,
    precisions: tuple[str, ...] = ("fp32",),
) -> dict:
    """CA-MTL vs vanilla training steps, for each padding (and precision): one process per build order,
    pooled. With bf16 among ``precisions``, also CA-MTL vs vanilla in bf16 and fp32 / bf16 per contender."""
    per_process = math.ceil(rounds / len(BUILD_ORDERS))
    runs = [
        run_child(
            TrainingMeasurement(shape, paddings, per_process, warmup, index * per_process, order, precisions),
            features,
        )
        for index, order in enumerate(BUILD_ORDERS)
    ]
    seconds = {name: [t for run in runs for t in run["seconds"][name]] for name in runs[0]["seconds"]}
    result = {
        "build_orders": [list(order) for order in BUILD_ORDERS],
        "steps": {name: summarize_times(times, BATCH_SIZE) for name, times in seconds.items()},
        "mean_padded_length": {
            p: statistics.mean(n for run in runs for n in run["padded_lengths"][p]) for p in paddings
        },
        "mean_example_length": statistics.mean(n for run in runs for n in run["example_lengths"]),
        # The batches of the timed rounds (the warm-up's dropped): what a FLOP count over them divides.
        "timed_padded_lengths": {
            p: [n for run in runs for n in run["padded_lengths"][p][warmup:]] for p in paddings
        },
    }
    pairs = {
        step_name("camtl_vs_vanilla", p, precision): (
            seconds[step_name("camtl", p, precision)],
            seconds[step_name("vanilla", p, precision)],
        )
        for p in paddings
        for precision in precisions
    }
    for precision in (x for x in precisions if x != "fp32"):  # above 1: the other precision is faster
        for p in paddings:
            for name in CONTENDERS:
                times = (seconds[step_name(name, p)], seconds[step_name(name, p, precision)])
                pairs[f"fp32_vs_{precision}_{name}_{p}"] = times
    for padding in (p for p in paddings if p != "fixed" and "fixed" in paddings):
        for name in CONTENDERS:  # examples/s over examples/s padded to 128 = fixed time over this time
            pairs[f"{padding}_vs_fixed_{name}"] = (seconds[f"{name}_fixed"], seconds[f"{name}_{padding}"])
    result["ratios"], result["ratio_quartiles"] = compare(pairs)
    if "fixed" in paddings:
        result["camtl_vs_vanilla_fixed_by_build_order"] = [
            paired_ratio(run["seconds"]["camtl_fixed"], run["seconds"]["vanilla_fixed"]) for run in runs
        ]
    return result
