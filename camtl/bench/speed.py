"""Speed of CA-MTL against a vanilla multitask BERT on this machine's CPU.

Measures the training step (6x384 and 12x768 encoders, batches padded to 128 or to their longest
example), one MT-Uncertainty step against its floor, evaluation throughput, tokenizing and reloading
the feature cache, and peak memory. Contenders run alternately, one step each per round: the machine
is shared and noisy, so every time is a median over rounds and every comparison is the median of the
paired ratios a_i / b_i of two steps timed in the same round. Training steps are timed in two fresh
processes that build the contenders in opposite orders (camtl/bench/speed_training.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from transformers import TrainingArguments

from camtl.bench.common import write_json
from camtl.bench.speed_breakdown import format_breakdown, measure_breakdown
from camtl.bench.speed_precision import format_precision, measure_precision_axis, precision_ratios
from camtl.bench.speed_report import (
    WARMUP_ROUNDS,
    alternate,
    check_targets,
    collect_ratios,
    compare,
    format_report,
    summarize_times,
)
from camtl.bench.speed_setup import (  # noqa: F401 (re-exported: camtl.bench.speed.build_model, ...)
    BATCH_SIZE,
    CONTENDERS,
    EVAL_BATCH_SIZE,
    MAX_SEQ_LENGTH,
    MEMORY_METHOD,
    MTU_TASKS,
    PADDINGS,
    REPO_ROOT,
    THREADS,
    backbone_config,
    build_model,
    drawn_batches,
    length_sorted_chunks,
    make_optimizer,
    measure_memory,
    memory_probe,
    model_inputs,
    profile_step,
    training_step,
)
from camtl.bench.speed_training import measure_training_steps
from camtl.data.collation import MultiTaskCollator
from camtl.data.features import TaskFeatures, load_features
from camtl.data.splits import SPLITS, split_path
from camtl.errors import UsageError
from camtl.model import load_tokenizer
from camtl.model.presets import bundled_encoder_path
from camtl.tasks import TASKS, TRAINABLE_TASKS, evaluation_tasks
from camtl.training.evaluation import evaluate_tasks
from camtl.training.precision import autocast, cpu_name, this_cpu
from camtl.training.sampling import build_sampler
from camtl.training.trainer import CaMtlTrainer


@dataclass(frozen=True)
class Plan:
    """How much to measure: rounds per comparison, paddings at the base shape, data caps (None = all)."""

    small_rounds: int
    base_rounds: int
    base_warmup: int
    base_paddings: tuple[str, ...]
    mtu_rounds: int
    eval_examples: int | None  # per dev set
    tokenize_examples: int | None  # per split
    memory_shapes: tuple[str, ...]


FULL = Plan(20, 16, WARMUP_ROUNDS, ("fixed", "dynamic"), 6, 500, None, ("small", "base"))
QUICK = Plan(2, 1, 0, ("fixed",), 1, 40, 300, ("small",))  # base: one cold step each
BREAKDOWN_ROUNDS = {"small": 16, "base": 6}


# ---------------------------------------------------------------------------------------------------------
# Models, data, steps


def measure_feature_cache(
    data_dir: Path, tokenizer, cache_dir: Path, max_examples: int | None
) -> tuple[dict, dict[str, TaskFeatures]]:
    """Tokenize every split of the GLUE folder into an empty cache, then reload it; returns the train sets."""
    splits = [
        (task, split)
        for task in TASKS
        for split in SPLITS
        if TASKS[task].split(split) is not None and split_path(data_dir, task, split).is_file()
    ]

    def load_all() -> tuple[float, dict]:
        start = time.perf_counter()
        loaded = {
            (task, split): load_features(
                data_dir, task, split, tokenizer, MAX_SEQ_LENGTH, cache_dir, max_examples
            )
            for task, split in splits
        }
        return time.perf_counter() - start, loaded

    cold_s, _ = load_all()
    reload_s, loaded = load_all()
    examples = sum(len(f) for f in loaded.values())
    report = {
        "splits": len(splits),
        "examples": examples,
        "max_examples_per_split": max_examples,
        "cold_s": cold_s,
        "cold_examples_per_s": examples / cold_s,
        "reload_s": reload_s,
        "reload_examples_per_s": examples / reload_s,
    }
    return report, {task: loaded[(task, "train")] for task in TRAINABLE_TASKS}


def mt_uncertainty_setup(
    train_sets: dict[str, TaskFeatures], pad_token_id: int, rounds: int, work_dir: Path, precision: str
):
    """The model, optimizer and trainer of the MT-Uncertainty measurement, and the pools and batches timed."""
    sets = {task: train_sets[task] for task in MTU_TASKS}
    model = build_model("small", "base", MTU_TASKS)
    collator = MultiTaskCollator(pad_token_id)
    pool_sampler = build_sampler("mt-uncertainty", [len(f) for f in sets.values()], BATCH_SIZE, seed=0)
    trainer = CaMtlTrainer(
        model=model,
        args=TrainingArguments(
            output_dir=str(work_dir), report_to="none", use_cpu=True, bf16=precision == "bf16"
        ),
        train_sets=sets,
        task_sampler=pool_sampler,
        collator=collator,
    )
    count = WARMUP_ROUNDS + rounds
    pools = [collator(examples) for examples in drawn_batches(sets, "mt-uncertainty", count)]
    proportional = [model_inputs(collator(e)) for e in drawn_batches(sets, "proportional", count)]
    return model, make_optimizer(model), trainer, pools, proportional


def measure_mt_uncertainty(
    train_sets: dict[str, TaskFeatures],
    pad_token_id: int,
    rounds: int,
    work_dir: Path,
    precision: str = "fp32",
) -> dict:
    """One MT-Uncertainty step (score T x b candidates without gradients, keep b, train on them) against its
    floor (the no-grad forward over the same pool in length-sorted chunks, in the sampler's scoring mode,
    + the training step on the selection) and against a proportional-sampling step.

    The selection is CaMtlTrainer.select_uncertain_candidates, the code path of training. The floor's
    training step is the one inside the same MT-Uncertainty step, timed on its own: the selection drifts
    as the model trains, and its length with it, so a training step on any other batch would not match.
    Every forward runs at ``precision`` (the selection's own through the trainer's arguments).
    """
    model, optimizer, trainer, pools, proportional = mt_uncertainty_setup(
        train_sets, pad_token_id, rounds, work_dir, precision
    )
    chunks = [length_sorted_chunks(pool, BATCH_SIZE) for pool in pools]
    training_part, selected_lengths = [], []

    def mtu_step(i: int) -> None:
        pool = dict(pools[i])
        selected = trainer.select_uncertain_candidates(model, pool, pool.pop("example_index"))[0]
        start = time.perf_counter()
        training_step(model, optimizer, selected, precision)
        training_part.append(time.perf_counter() - start)
        selected_lengths.append(selected["input_ids"].shape[1])

    def pool_forward(i: int) -> None:
        model.train(trainer.task_sampler.scoring_mode == "train")  # the mode the selection scores in
        with torch.no_grad(), autocast(precision, "cpu"):
            for chunk in chunks[i]:
                model(**chunk)
        model.train()

    seconds = alternate(
        {
            "mtu_step": mtu_step,
            "pool_forward": pool_forward,
            "proportional_step": lambda i: training_step(model, optimizer, proportional[i], precision),
        },
        rounds,
    )
    seconds["mtu_training_part"] = training_part[WARMUP_ROUNDS:]
    shapes = {
        "mean_pool_length": statistics.mean(p["input_ids"].shape[1] for p in pools),
        "mean_chunk_length": statistics.mean(c["input_ids"].shape[1] for cs in chunks for c in cs),
        "selected_lengths": selected_lengths[WARMUP_ROUNDS:],
    }
    return _mt_uncertainty_result(seconds, shapes)


def _mt_uncertainty_result(seconds: dict[str, list[float]], shapes: dict) -> dict:
    """The MT-Uncertainty measurement's summary: each step's times, the floor, and the paired ratios."""
    floor = [a + b for a, b in zip(seconds["pool_forward"], seconds["mtu_training_part"], strict=True)]
    result = {
        "tasks": len(MTU_TASKS),
        "candidates_per_step": len(MTU_TASKS) * BATCH_SIZE,
        "steps": {name: summarize_times(times, BATCH_SIZE) for name, times in seconds.items()},
        "floor_median_s": statistics.median(floor),
        **shapes,
    }
    pairs = {
        "mtu_vs_floor": (seconds["mtu_step"], floor),
        "mtu_vs_proportional": (seconds["mtu_step"], seconds["proportional_step"]),
        "pool_forward_vs_training_step": (seconds["pool_forward"], seconds["mtu_training_part"]),
    }
    result["ratios"], result["ratio_quartiles"] = compare(pairs)
    return result


def measure_evaluation(dev_sets: dict[str, TaskFeatures], pad_token_id: int, precision: str = "fp32") -> dict:
    """Examples per second of camtl.training.evaluation over every dev set, CA-MTL and vanilla (small
    shape), at ``precision``."""
    collator = MultiTaskCollator(pad_token_id)
    examples = sum(len(f) for f in dev_sets.values())
    result = {"examples": examples, "tasks": len(dev_sets)}
    for name, layout in CONTENDERS.items():
        model = build_model("small", layout)
        start = time.perf_counter()
        evaluate_tasks(
            model, dev_sets, collator, EVAL_BATCH_SIZE, autocast=lambda: autocast(precision, "cpu")
        )
        seconds = time.perf_counter() - start
        result[name] = {"seconds": seconds, "examples_per_s": examples / seconds}
    result["camtl_vs_vanilla"] = result["vanilla"]["examples_per_s"] / result["camtl"]["examples_per_s"]
    return result


# ---------------------------------------------------------------------------------------------------------
# The program


def _machine_and_shapes(quick: bool) -> dict:
    """What a speed result is measured on: the CPU, threads, library versions and the batch shape."""
    return {
        "machine": {
            "cpu": cpu_name(),
            "threads": THREADS,
            "torch": torch.__version__,
            "load_average_at_start": os.getloadavg(),  # other processes on the shared machine
        },
        "transformers": transformers.__version__,
        "quick": quick,
        "batch_size": BATCH_SIZE,
        "max_seq_length": MAX_SEQ_LENGTH,
    }


def measure(data_dir: Path, plan: Plan, quick: bool, log: Callable[[str], None]) -> dict:
    """Every measurement of the speed benchmark in one run (so that its ratios pair), then the ratios."""
    torch.set_num_threads(THREADS)
    tokenizer = load_tokenizer(bundled_encoder_path())
    pad = tokenizer.pad_token_id
    result = _machine_and_shapes(quick)
    with tempfile.TemporaryDirectory(prefix="camtl-speed-") as temp:
        log("tokenizing every GLUE split into an empty cache, then reloading it")
        cache_dir = Path(temp) / "features"
        features, train_sets = measure_feature_cache(data_dir, tokenizer, cache_dir, plan.tokenize_examples)
        result["feature_cache"] = features
        log("training steps, 6 x 384")
        stored = (str(data_dir), str(cache_dir), plan.tokenize_examples)
        result["training_small"] = measure_training_steps("small", plan.small_rounds, tuple(PADDINGS), stored)
        log("training steps, 12 x 768")
        result["training_base"] = measure_training_steps(
            "base", plan.base_rounds, plan.base_paddings, stored, plan.base_warmup
        )
        log("MT-Uncertainty step")
        result["mt_uncertainty"] = measure_mt_uncertainty(
            train_sets, pad, plan.mtu_rounds, Path(temp) / "trainer"
        )
        log("evaluation")
        dev_sets = {
            task: load_features(
                data_dir, task, "dev", tokenizer, MAX_SEQ_LENGTH, cache_dir, plan.eval_examples
            )
            for task in evaluation_tasks(list(TRAINABLE_TASKS))
        }
        result["evaluation"] = measure_evaluation(dev_sets, pad)
        result["precision"] = measure_precision_axis(
            lambda shape, rounds, paddings, precisions: measure_training_steps(
                shape, rounds, paddings, stored, plan.base_warmup if shape == "base" else WARMUP_ROUNDS,
                precisions,
            ),
            lambda precision: measure_mt_uncertainty(
                train_sets, pad, plan.mtu_rounds, Path(temp) / f"trainer-{precision}", precision
            ),
            lambda precision: measure_evaluation(dev_sets, pad, precision),
            {"small": plan.small_rounds, "base": plan.base_rounds},
            log,
        )  # fmt: skip
    result["memory"] = {"method": MEMORY_METHOD}
    for shape in plan.memory_shapes:
        log(f"peak memory, {shape}")
        result["memory"][shape] = measure_memory(shape)
    result["machine"]["load_average_at_end"] = os.getloadavg()
    result["ratios"], result["ratio_quartiles"] = collect_ratios(result)
    result["ratios"] |= precision_ratios(result["precision"])
    result["targets"] = check_targets(result["ratios"])
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a reduced run (under 3 minutes)")
    parser.add_argument("--json", action="store_true", help="print the JSON object instead of the table")
    parser.add_argument(
        "--output", type=Path, default=Path("results/speed.json"), help="JSON file; the table goes beside it"
    )
    parser.add_argument("--data_dir", type=Path, default=Path("../shared/glue"), help="GLUE folder")
    parser.add_argument(
        "--profile",
        choices=("small", "base"),
        default=None,
        help="instead of measuring, print torch.profiler tables of four training steps per contender",
    )
    parser.add_argument(
        "--profile_precision", choices=("fp32", "bf16"), default="fp32", help="the profiled steps' precision"
    )
    parser.add_argument(
        "--profile_padding", choices=tuple(PADDINGS), default="fixed", help="the profiled steps' batches"
    )
    parser.add_argument(
        "--breakdown",
        choices=("small", "base"),
        default=None,
        help="instead of the full run, time CA-MTL and each conditional module alone against vanilla",
    )


def run(args: argparse.Namespace) -> None:
    if not args.data_dir.is_dir():
        raise UsageError(f"--data_dir {args.data_dir} does not exist: point it at the GLUE folder")
    if not args.profile and (args.profile_precision, args.profile_padding) != ("fp32", "fixed"):
        raise UsageError(
            "--profile_precision and --profile_padding shape a profile: add --profile small|base"
        )
    if args.profile and args.profile_precision == "bf16" and not this_cpu().native_bf16:
        raise UsageError(
            "--profile_precision bf16: this CPU has no native bf16 (it would be emulated): use fp32"
        )
    if args.profile or args.breakdown:
        torch.set_num_threads(THREADS)
        tokenizer = load_tokenizer(bundled_encoder_path())
        with tempfile.TemporaryDirectory(prefix="camtl-speed-") as temp:
            _, train_sets = measure_feature_cache(
                args.data_dir, tokenizer, Path(temp), QUICK.tokenize_examples
            )
        if args.profile:
            print(profile_step(args.profile, train_sets, tokenizer.pad_token_id, args.profile_precision,
                               args.profile_padding))  # fmt: skip
        else:
            rounds = BREAKDOWN_ROUNDS[args.breakdown]
            result = measure_breakdown(args.breakdown, train_sets, tokenizer.pad_token_id, rounds)
            write_result(args.output.with_name(f"speed-breakdown-{args.breakdown}.json"), result,
                         format_breakdown(result), args.json)  # fmt: skip
        return
    plan = QUICK if args.quick else FULL

    def log(message: str) -> None:
        print(f"[speed] {message}", file=sys.stderr, flush=True)

    result = measure(args.data_dir, plan, args.quick, log)
    report = "\n".join([format_report(result), *format_precision(result["precision"], result)])
    write_result(args.output, result, report, args.json)


def write_result(path: Path, result: dict, report: str, as_json: bool) -> None:
    """The JSON object at ``path``, the table beside it (.txt); print one of them."""
    write_json(path, result)
    path.with_suffix(".txt").write_text(report + "\n")
    print(json.dumps(result, indent=2) if as_json else report)
