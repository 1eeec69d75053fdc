"""Speed of CA-MTL against a vanilla multitask BERT on this machine's CPU.

Measures the training step (6x384 and 12x768 encoders, batches padded to 128 or to their longest
example), one MT-Uncertainty step against its floor, evaluation throughput, tokenizing and reloading
the feature cache, and peak memory. Contenders run alternately, one step each per round, in one
process: the machine is shared and noisy, so every time is a median over rounds and every comparison
is the median of the paired ratios a_i / b_i of two steps timed in the same round.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from torch.utils.data import ConcatDataset
from transformers import BertConfig, TrainingArguments

from camtl.collation import MultiTaskCollator
from camtl.data import SPLITS, split_path
from camtl.errors import UsageError
from camtl.evaluation import evaluate_tasks
from camtl.features import TaskDataset, TaskFeatures, load_features
from camtl.model import CaMtlConfig, CaMtlModel, load_model, load_tokenizer
from camtl.model.presets import bundled_encoder_path
from camtl.sampling import build_sampler
from camtl.tasks import TASKS, TRAINABLE_TASKS, evaluation_tasks
from camtl.training import CaMtlTrainer

THREADS = 2
BATCH_SIZE = 32
MAX_SEQ_LENGTH = 128
EVAL_BATCH_SIZE = 64
WARMUP_ROUNDS = 1
MTU_TASKS = tuple(task for task in TRAINABLE_TASKS if task != "wnli")  # T = 8 candidate batches per step
CONTENDERS = {"camtl": "base", "vanilla": "none"}  # contender -> layout
PADDINGS = {  # padding -> (the collator's pad_to, batches grouped by length)
    "fixed": (MAX_SEQ_LENGTH, False),
    "dynamic": (None, False),
    "grouped": (None, True),  # batches drawn as --train_sampling_strategy group_by_length draws them
}
MEMORY_METHOD = "peak RSS (VmHWM) of a fresh subprocess that builds the model and runs two training steps"
REPO_ROOT = Path(__file__).resolve().parents[2]

TARGETS = {  # ratio -> (comparison, bound)
    "camtl_vs_vanilla_small": ("<=", 1.05),
    "camtl_vs_vanilla_base": ("<=", 1.05),
    "mtu_vs_floor": ("<=", 1.10),
    "dynamic_vs_fixed_padding": (">=", 2.0),
    "grouped_vs_fixed_padding": (">=", 2.0),  # the same target with --train_sampling_strategy group_by_length
}


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


# ---------------------------------------------------------------------------------------------------------
# Models, data, steps


def backbone_config(shape: str) -> BertConfig:
    """small: the bundled encoder's shape (6 x 384); base: BERT-base (12 x 768)."""
    return BertConfig.from_pretrained(bundled_encoder_path()) if shape == "small" else BertConfig()


def build_model(shape: str, layout: str, tasks: tuple[str, ...] = TRAINABLE_TASKS) -> CaMtlModel:
    """The bundled encoder's weights at the small shape, random init at the base shape (no download)."""
    torch.manual_seed(0)
    if shape == "small":
        model = load_model(bundled_encoder_path(), list(tasks), layout=layout, max_seq_length=MAX_SEQ_LENGTH)
    else:
        config = CaMtlConfig(
            layout=layout,
            backbone=backbone_config(shape).to_dict(),
            tasks=list(tasks),
            max_seq_length=MAX_SEQ_LENGTH,
        )
        model = CaMtlModel(config)
    return model.train()


def make_optimizer(model: CaMtlModel) -> torch.optim.Optimizer:
    """The optimizer training uses: the Trainer's default, adamw_torch_fused."""
    return torch.optim.AdamW(model.parameters(), lr=2e-5, fused=True)


def training_step(model: CaMtlModel, optimizer: torch.optim.Optimizer, batch: dict) -> None:
    loss = model(**batch).loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def model_inputs(batch: dict) -> dict:
    return {key: value for key, value in batch.items() if key != "example_index"}


def drawn_batches(
    train_sets: dict[str, TaskFeatures], sampler_name: str, count: int, group_by_length: bool = False
) -> list[list[dict]]:
    """The first ``count`` batches (lists of examples) that a camtl sampler draws from ``train_sets``."""
    dataset = ConcatDataset([TaskDataset(features, t) for t, features in enumerate(train_sets.values())])
    sampler = build_sampler(sampler_name, [len(f) for f in train_sets.values()], BATCH_SIZE, seed=0)
    if group_by_length:
        sampler.grouped_by_length(torch.cat([features.lengths for features in train_sets.values()]))
    batches = []
    for indices in sampler:
        if len(batches) == count:
            break
        batches.append([dataset[i] for i in indices])
    return batches


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


def measure_training_steps(
    shape: str,
    train_sets: dict[str, TaskFeatures],
    pad_token_id: int,
    rounds: int,
    paddings: tuple[str, ...],
    warmup: int = WARMUP_ROUNDS,
) -> dict:
    """CA-MTL vs vanilla training steps on the same mixed-task batches, for each padding."""
    models = {name: build_model(shape, layout) for name, layout in CONTENDERS.items()}
    optimizers = {name: make_optimizer(model) for name, model in models.items()}
    draws = {  # fixed and dynamic padding collate the same draw
        grouped: drawn_batches(train_sets, "proportional", warmup + rounds, grouped)
        for grouped in {PADDINGS[padding][1] for padding in paddings}
    }
    batches = {
        padding: [model_inputs(MultiTaskCollator(pad_token_id, PADDINGS[padding][0])(e))
                  for e in draws[PADDINGS[padding][1]]]
        for padding in paddings
    }  # fmt: skip

    def step(name: str, padding: str) -> Callable[[int], None]:
        return lambda i: training_step(models[name], optimizers[name], batches[padding][i])

    steps = {f"{name}_{padding}": step(name, padding) for padding in paddings for name in models}
    seconds = alternate(steps, rounds, warmup)
    result = {
        "steps": {name: summarize_times(times, BATCH_SIZE) for name, times in seconds.items()},
        "mean_padded_length": {
            p: statistics.mean(b["input_ids"].shape[1] for b in batches[p]) for p in paddings
        },
        "mean_example_length": statistics.mean(
            float(b["attention_mask"].sum(1).float().mean()) for b in batches[paddings[0]]
        ),
    }
    pairs = {f"camtl_vs_vanilla_{p}": (seconds[f"camtl_{p}"], seconds[f"vanilla_{p}"]) for p in paddings}
    for padding in (p for p in paddings if p != "fixed"):  # every plan measures "fixed"
        for name in models:  # examples/s over examples/s padded to 128 = fixed time over this time
            pairs[f"{padding}_vs_fixed_{name}"] = (seconds[f"{name}_fixed"], seconds[f"{name}_{padding}"])
    result["ratios"], result["ratio_quartiles"] = compare(pairs)
    return result


def length_sorted_chunks(pool: dict, size: int) -> list[dict]:
    """The pool's rows sorted by length, in chunks of ``size`` each trimmed to its longest example: the
    least padding a no-grad forward over the whole pool can have."""
    lengths = pool["attention_mask"].sum(1)
    order = torch.argsort(lengths, descending=True)
    chunks = []
    for start in range(0, len(order), size):
        rows = order[start : start + size]
        longest = int(lengths[rows].max())
        chunk = {key: pool[key][rows, :longest] for key in ("input_ids", "token_type_ids", "attention_mask")}
        chunks.append({**chunk, "task_ids": pool["task_ids"][rows]})
    return chunks


def measure_mt_uncertainty(
    train_sets: dict[str, TaskFeatures], pad_token_id: int, rounds: int, work_dir: Path
) -> dict:
    """One MT-Uncertainty step (score T x b candidates without gradients, keep b, train on them) against its
    floor (the no-grad forward over the same pool in length-sorted chunks + the training step on the
    selection) and against a proportional-sampling step.

    The selection is CaMtlTrainer.select_uncertain_candidates, the code path of training. The floor's
    training step is the one inside the same MT-Uncertainty step, timed on its own: the selection drifts
    as the model trains, and its length with it, so a training step on any other batch would not match.
    """
    sets = {task: train_sets[task] for task in MTU_TASKS}
    model = build_model("small", "base", MTU_TASKS)
    optimizer = make_optimizer(model)
    collator = MultiTaskCollator(pad_token_id)
    pool_sampler = build_sampler("mt-uncertainty", [len(f) for f in sets.values()], BATCH_SIZE, seed=0)
    trainer = CaMtlTrainer(
        model=model,
        args=TrainingArguments(output_dir=str(work_dir), report_to="none", use_cpu=True),
        train_sets=sets,
        task_sampler=pool_sampler,
        collator=collator,
    )
    count = WARMUP_ROUNDS + rounds
    pools = [collator(examples) for examples in drawn_batches(sets, "mt-uncertainty", count)]
    proportional = [model_inputs(collator(e)) for e in drawn_batches(sets, "proportional", count)]
    chunks = [length_sorted_chunks(pool, BATCH_SIZE) for pool in pools]
    training_part, selected_lengths = [], []

    def mtu_step(i: int) -> None:
        pool = dict(pools[i])
        selected = trainer.select_uncertain_candidates(model, pool, pool.pop("example_index"))[0]
        start = time.perf_counter()
        training_step(model, optimizer, selected)
        training_part.append(time.perf_counter() - start)
        selected_lengths.append(selected["input_ids"].shape[1])

    def pool_forward(i: int) -> None:
        model.eval()
        with torch.no_grad():
            for chunk in chunks[i]:
                model(**chunk)
        model.train()

    seconds = alternate(
        {
            "mtu_step": mtu_step,
            "pool_forward": pool_forward,
            "proportional_step": lambda i: training_step(model, optimizer, proportional[i]),
        },
        rounds,
    )
    seconds["mtu_training_part"] = training_part[WARMUP_ROUNDS:]
    floor = [a + b for a, b in zip(seconds["pool_forward"], seconds["mtu_training_part"], strict=True)]
    result = {
        "tasks": len(MTU_TASKS),
        "candidates_per_step": len(MTU_TASKS) * BATCH_SIZE,
        "steps": {name: summarize_times(times, BATCH_SIZE) for name, times in seconds.items()},
        "floor_median_s": statistics.median(floor),
        "mean_pool_length": statistics.mean(p["input_ids"].shape[1] for p in pools),
        "mean_chunk_length": statistics.mean(c["input_ids"].shape[1] for cs in chunks for c in cs),
        "selected_lengths": selected_lengths[WARMUP_ROUNDS:],
    }
    pairs = {
        "mtu_vs_floor": (seconds["mtu_step"], floor),
        "mtu_vs_proportional": (seconds["mtu_step"], seconds["proportional_step"]),
        "pool_forward_vs_training_step": (seconds["pool_forward"], seconds["mtu_training_part"]),
    }
    result["ratios"], result["ratio_quartiles"] = compare(pairs)
    return result


def measure_evaluation(dev_sets: dict[str, TaskFeatures], pad_token_id: int) -> dict:
    """Examples per second of camtl.evaluation over every dev set, CA-MTL and vanilla (small shape)."""
    collator = MultiTaskCollator(pad_token_id)
    examples = sum(len(f) for f in dev_sets.values())
    result = {"examples": examples, "tasks": len(dev_sets)}
    for name, layout in CONTENDERS.items():
        model = build_model("small", layout)
        start = time.perf_counter()
        evaluate_tasks(model, dev_sets, collator, EVAL_BATCH_SIZE)
        seconds = time.perf_counter() - start
        result[name] = {"seconds": seconds, "examples_per_s": examples / seconds}
    result["camtl_vs_vanilla"] = result["vanilla"]["examples_per_s"] / result["camtl"]["examples_per_s"]
    return result


def process_memory_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process. Not ru_maxrss: across exec it keeps the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_probe(shape: str, layout: str) -> None:
    """Runs in a fresh subprocess: prints {model_rss_mib, peak_rss_mib} for two training steps on a
    random 32 x 128 batch of mixed tasks with random-init weights."""
    torch.set_num_threads(THREADS)
    config = CaMtlConfig(
        layout=layout,
        backbone=backbone_config(shape).to_dict(),
        tasks=list(TRAINABLE_TASKS),
        max_seq_length=MAX_SEQ_LENGTH,
    )
    model = CaMtlModel(config).train()
    optimizer = make_optimizer(model)
    task_ids = torch.arange(BATCH_SIZE) % len(TRAINABLE_TASKS)
    batch = {
        "input_ids": torch.randint(1000, config.backbone["vocab_size"], (BATCH_SIZE, MAX_SEQ_LENGTH)),
        "attention_mask": torch.ones(BATCH_SIZE, MAX_SEQ_LENGTH, dtype=torch.long),
        "token_type_ids": torch.zeros(BATCH_SIZE, MAX_SEQ_LENGTH, dtype=torch.long),
        "task_ids": task_ids,
        "labels": torch.zeros(BATCH_SIZE),  # class 0 and score 0 are valid labels for every task
    }
    model_rss = process_memory_mib("VmRSS")
    for _ in range(2):
        training_step(model, optimizer, batch)
    print(json.dumps({"model_rss_mib": model_rss, "peak_rss_mib": process_memory_mib("VmHWM")}))


def measure_memory(shape: str) -> dict:
    result = {}
    for name, layout in CONTENDERS.items():
        code = f"from camtl.bench.speed import memory_probe; memory_probe({shape!r}, {layout!r})"
        process = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=False
        )
        if process.returncode != 0:
            raise RuntimeError(f"memory probe {shape} {layout} failed:\n{process.stderr[-2000:]}")
        probe = json.loads(process.stdout.strip().splitlines()[-1])
        probe["step_mib"] = probe["peak_rss_mib"] - probe["model_rss_mib"]
        result[name] = probe
    result["peak_camtl_vs_vanilla"] = result["camtl"]["peak_rss_mib"] / result["vanilla"]["peak_rss_mib"]
    result["step_camtl_vs_vanilla"] = result["camtl"]["step_mib"] / result["vanilla"]["step_mib"]
    return result


def profile_step(shape: str, train_sets: dict[str, TaskFeatures], pad_token_id: int, rows: int = 25) -> str:
    """torch.profiler tables (ops by self CPU time) of one training step per contender."""
    batch = model_inputs(
        MultiTaskCollator(pad_token_id, MAX_SEQ_LENGTH)(drawn_batches(train_sets, "proportional", 1)[0])
    )
    tables = []
    for name, layout in CONTENDERS.items():
        model = build_model(shape, layout)
        optimizer = make_optimizer(model)
        training_step(model, optimizer, batch)  # warm-up
        with torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU], with_stack=True
        ) as prof:
            training_step(model, optimizer, batch)
        table = prof.key_averages(group_by_stack_n=5).table(sort_by="self_cpu_time_total", row_limit=rows)
        tables.append(f"== {name} ({shape}, 32 x {MAX_SEQ_LENGTH}) ==\n{table}")
    return "\n".join(tables)


# ---------------------------------------------------------------------------------------------------------
# The program


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def measure(data_dir: Path, plan: Plan, quick: bool, log: Callable[[str], None]) -> dict:
    torch.set_num_threads(THREADS)
    tokenizer = load_tokenizer(bundled_encoder_path())
    pad = tokenizer.pad_token_id
    result = {
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
    with tempfile.TemporaryDirectory(prefix="camtl-speed-") as temp:
        log("tokenizing every GLUE split into an empty cache, then reloading it")
        cache_dir = Path(temp) / "features"
        features, train_sets = measure_feature_cache(data_dir, tokenizer, cache_dir, plan.tokenize_examples)
        result["feature_cache"] = features
        log("training steps, 6 x 384")
        result["training_small"] = measure_training_steps(
            "small", train_sets, pad, plan.small_rounds, tuple(PADDINGS)
        )
        log("training steps, 12 x 768")
        result["training_base"] = measure_training_steps(
            "base", train_sets, pad, plan.base_rounds, plan.base_paddings, plan.base_warmup
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
    result["memory"] = {"method": MEMORY_METHOD}
    for shape in plan.memory_shapes:
        log(f"peak memory, {shape}")
        result["memory"][shape] = measure_memory(shape)
    result["machine"]["load_average_at_end"] = os.getloadavg()
    result["ratios"], result["ratio_quartiles"] = collect_ratios(result)
    result["targets"] = check_targets(result["ratios"])
    return result


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
                for name in CONTENDERS
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
        help="instead of measuring, print torch.profiler tables of one training step per contender",
    )


def run(args: argparse.Namespace) -> None:
    if not args.data_dir.is_dir():
        raise UsageError(f"--data_dir {args.data_dir} does not exist: point it at the GLUE folder")
    if args.profile:
        torch.set_num_threads(THREADS)
        tokenizer = load_tokenizer(bundled_encoder_path())
        with tempfile.TemporaryDirectory(prefix="camtl-profile-") as temp:
            _, train_sets = measure_feature_cache(
                args.data_dir, tokenizer, Path(temp), QUICK.tokenize_examples
            )
            print(profile_step(args.profile, train_sets, tokenizer.pad_token_id))
        return
    plan = QUICK if args.quick else FULL

    def log(message: str) -> None:
        print(f"[speed] {message}", file=sys.stderr, flush=True)

    result = measure(args.data_dir, plan, args.quick, log)
    report = format_report(result)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    args.output.with_suffix(".txt").write_text(report + "\n")
    print(json.dumps(result, indent=2) if args.json else report)
