"""``python -m camtl.bench glue-mini``: the paper's claims on real GLUE with the bundled 6-layer encoder.

Contenders: the paper's module ablation (vanilla multi-task; + conditional attention; + conditional
adapter; + conditional layer norm = CA-MTL; + MT-Uncertainty), single-task models, and camtl's own
options as ablations of CA-MTL. Every multitask contender trains ``max_steps`` x ``batch_size``
examples with the same learning rate, schedule, sampling and sequence length; a single-task model trains
``single_task_epochs`` epochs of its task (at most ``single_task_max_steps`` steps). Each run is one
``run.py`` subprocess that trains and saves the model; this program then predicts the first
``max_eval_samples`` rows of every dev set with ``camtl.evaluation.predict_features`` (what run.py's own
evaluation calls), scores them with ``camtl.metrics``, and keeps the predictions for paired bootstraps.

One record per run, ``<output>/runs/<contender>-seed<S>.json`` (and ``.predictions.json``), written as the
run finishes: the study resumes where it stopped; ``--commit`` commits each record at once. Reports
(``camtl.bench.report``) are rebuilt from the records.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from camtl.bench import report
from camtl.bench.common import (
    DEFAULT_BACKBONE,
    GLUE_AVERAGE_TASKS,
    cpu_seconds_of_children,
    execute,
    git_commit,
    read_json,
    read_training,
    train_runtime,
    write_json,
    x100,
)
from camtl.collation import MultiTaskCollator
from camtl.data import read_split
from camtl.errors import UsageError
from camtl.evaluation import predict_features
from camtl.features import load_features
from camtl.metrics import compute_metrics, summarize
from camtl.model import encoder_layer_count, load_model, load_tokenizer
from camtl.tasks import evaluation_tasks, resolve_tasks


@dataclass(frozen=True)
class Contender:
    name: str
    description: str
    flags: tuple[str, ...] = ()  # run.py flags on top of the study's
    single_task: bool = False


CA_MTL = ("--layout", "base")
MTU = ("--task_sampling", "mt-uncertainty")
CONTENDERS = {
    c.name: c
    for c in (
        Contender("single-task", "one plain encoder per task", ("--layout", "none"), single_task=True),
        Contender("vanilla", "shared encoder, per-task heads, no conditional module", ("--layout", "none")),
        Contender(
            "+attention",
            "+ conditional alignment and attention",
            CA_MTL + ("--conditional_modules", "alignment", "attention"),
        ),
        Contender(
            "+adapter",
            "+ conditional adapter (top layer from scratch)",
            CA_MTL + ("--conditional_modules", "alignment", "attention", "adapter"),
        ),
        Contender("ca-mtl", "+ conditional layer norm: CA-MTL, the reference-exact default", CA_MTL),
        Contender("ca-mtl-mtu", "CA-MTL with MT-Uncertainty sampling", CA_MTL + MTU),
        Contender(
            "mtu-eval-scoring",
            "MT-Uncertainty scoring with dropout off",
            CA_MTL + MTU + ("--mtu_scoring_mode", "eval"),
        ),
        Contender(
            "example-mean", "CA-MTL, loss = mean over examples", CA_MTL + ("--loss_reduction", "example_mean")
        ),
        Contender(
            "per-block-film", "CA-MTL, one FiLM per block of M(z)", CA_MTL + ("--attention_film", "per_block")
        ),
        Contender(
            "adapter-gelu", "CA-MTL, GELU inside the adapter", CA_MTL + ("--adapter_activation", "gelu")
        ),
        Contender("mean-pooling", "CA-MTL, mean pooling (the encoder's own)", CA_MTL + ("--pooling", "mean")),
        Contender(
            "heads-x10", "CA-MTL, heads at 10x the learning rate", CA_MTL + ("--head_lr_multiplier", "10")
        ),
    )
}
PAPER_CONTENDERS = ("single-task", "vanilla", "+attention", "+adapter", "ca-mtl", "ca-mtl-mtu")


@dataclass(frozen=True)
class Settings:
    """Everything that makes two runs of one contender and seed comparable."""

    data_dir: str
    backbone: str
    tasks: tuple[str, ...]
    max_steps: int
    batch_size: int
    learning_rate: float
    max_seq_length: int
    max_eval_samples: int
    task_sampling: str
    sampling_temperature: float
    single_task_epochs: float
    single_task_max_steps: int
    logging_steps: int
    threads: int


FULL = {
    "max_steps": 800,
    "batch_size": 32,
    "learning_rate": 1e-4,
    "max_seq_length": 128,
    "max_eval_samples": 1000,
    "task_sampling": "temperature",
    "sampling_temperature": 3.0,
    "single_task_epochs": 3.0,
    "single_task_max_steps": 600,
    "logging_steps": 50,
    "threads": 1,
}
QUICK = {
    **FULL,
    "max_steps": 4,
    "batch_size": 4,
    "learning_rate": 1e-3,
    "max_seq_length": 32,
    "max_eval_samples": 8,
    "single_task_epochs": 1.0,
    "single_task_max_steps": 3,
    "logging_steps": 2,
}


def single_task_steps(settings: Settings) -> dict[str, int]:
    """Steps of each single-task model: its epochs of the task's training rows, capped. WNLI, outside the
    GLUE average, gets no model (run.py cannot average a WNLI-only evaluation)."""
    steps = {}
    for task in settings.tasks:
        if task in GLUE_AVERAGE_TASKS:
            rows = len(read_split(settings.data_dir, task, "train"))
            epochs = math.ceil(settings.single_task_epochs * rows / settings.batch_size)
            steps[task] = max(1, min(settings.single_task_max_steps, epochs))
    return steps


def run_flags(
    contender: Contender,
    settings: Settings,
    seed: int,
    output_dir: Path,
    cache_dir: Path,
    task: str | None = None,
    max_steps: int | None = None,
) -> list[str]:
    """run.py's flags for one run (train and save); ``task`` and ``max_steps`` for one single-task model."""
    steps = max_steps or settings.max_steps
    flags = [
        "--model_name_or_path", settings.backbone, "--data_dir", settings.data_dir,
        "--output_dir", output_dir, "--features_cache_dir", cache_dir, "--do_train",
        "--max_steps", steps, "--seed", seed, "--per_device_train_batch_size", settings.batch_size,
        "--learning_rate", settings.learning_rate, "--max_seq_length", settings.max_seq_length,
        "--train_sampling_strategy", "group_by_length", "--logging_steps", min(settings.logging_steps, steps),
        "--save_strategy", "steps", "--save_steps", steps, "--save_only_model", "--report_to", "none",
        "--overwrite_output_dir", "--tasks", *([task] if task else settings.tasks),
    ]  # fmt: skip
    flags += list(contender.flags)
    if "mt-uncertainty" not in contender.flags and task is None:
        flags += ["--task_sampling", settings.task_sampling]
        if settings.task_sampling == "temperature":
            flags += ["--sampling_temperature", settings.sampling_temperature]
    return [str(flag) for flag in flags]


def evaluate_saved(output_dir: Path, settings: Settings, cache_dir: Path) -> tuple[dict, dict]:
    """(metrics as in eval_results.json, predictions per dev task) of the model saved in ``output_dir``."""
    model = load_model(str(output_dir), None)
    tokenizer = load_tokenizer(str(output_dir))
    collator = MultiTaskCollator(tokenizer.pad_token_id)
    results, predictions = {}, {}
    for task in evaluation_tasks(model.config.tasks):
        dev = load_features(
            settings.data_dir,
            task,
            "dev",
            tokenizer,
            settings.max_seq_length,
            cache_dir,
            max_examples=settings.max_eval_samples,
        )
        predicted = predict_features(model, dev, collator, 128)
        results[task] = compute_metrics(task, predicted, dev.labels.numpy())
        predictions[task] = predicted.tolist()
    return summarize(results), predictions


def train_and_evaluate(flags: list[str], output_dir: Path, settings: Settings, cache_dir: Path) -> dict:
    """One run.py run, then the evaluation; the record fields common to every contender."""
    load, cpu = os.getloadavg()[0], cpu_seconds_of_children()
    wall = execute(flags, output_dir, settings.threads)
    torch.set_num_threads(settings.threads)
    metrics, predictions = evaluate_saved(output_dir, settings, cache_dir)
    runtime, history = train_runtime(output_dir, int(flags[flags.index("--max_steps") + 1]))
    return {
        **read_training(output_dir),
        "metrics": metrics,
        "scores": {t: v["score"] for t, v in metrics.items() if isinstance(v, dict)},
        "glue_average": metrics["glue_average"],
        "predictions": predictions,
        "wall_seconds": wall,
        "train_runtime": runtime,
        "cpu_seconds": cpu_seconds_of_children() - cpu,
        "load_before": load,
        "load_after": os.getloadavg()[0],
        "task_mix": report.task_mix_of(history),
        "command": " ".join(["python run.py", *flags]),
    }


def run_multitask(
    contender: Contender, seed: int, settings: Settings, work_dir: Path, cache_dir: Path
) -> dict:
    output_dir = work_dir / f"{contender.name}-seed{seed}"
    flags = run_flags(contender, settings, seed, output_dir, cache_dir)
    return {
        "contender": contender.name,
        "seed": seed,
        **train_and_evaluate(flags, output_dir, settings, cache_dir),
    }


def run_single_task(
    contender: Contender, seed: int, settings: Settings, work_dir: Path, cache_dir: Path, parts_dir: Path
) -> dict:
    """One model per task (each part resumable on its own), combined into one record."""
    parts = {}
    for task, steps in single_task_steps(settings).items():
        part_file = parts_dir / f"{contender.name}-seed{seed}-{task}.json"
        if not part_file.exists():
            output_dir = work_dir / f"{contender.name}-seed{seed}" / task
            flags = run_flags(contender, settings, seed, output_dir, cache_dir, task=task, max_steps=steps)
            write_json(
                part_file, {"steps": steps, **train_and_evaluate(flags, output_dir, settings, cache_dir)}
            )
        parts[task] = read_json(part_file)
    if not parts:
        raise UsageError("the single-task contender needs a task other than wnli: add one to --tasks")
    metrics = summarize(
        {t: v for p in parts.values() for t, v in p["metrics"].items() if isinstance(v, dict)}
    )
    totals = {
        key: sum(p[key] for p in parts.values())
        for key in (
            "examples_seen",
            "trainable_params",
            "total_params",
            "wall_seconds",
            "train_runtime",
            "cpu_seconds",
        )
    }
    return {
        "contender": contender.name,
        "seed": seed,
        **totals,
        "metrics": metrics,
        "glue_average": metrics["glue_average"],
        "scores": {t: v["score"] for t, v in metrics.items() if isinstance(v, dict)},
        "predictions": {t: v for p in parts.values() for t, v in p["predictions"].items()},
        "steps_per_task": {t: p["steps"] for t, p in parts.items()},
        "percent_data_used": None,
        "task_mix": [],
        "command": "; ".join(p["command"] for p in parts.values()),
    }


def save_record(output: Path, record: dict) -> Path:
    """``runs/<contender>-seed<S>.json`` and its predictions beside it (kept out of the record itself)."""
    stem = output / "runs" / f"{record['contender']}-seed{record['seed']}"
    write_json(stem.with_suffix(".predictions.json"), record.pop("predictions"))
    write_json(stem.with_suffix(".json"), record)
    return stem.with_suffix(".json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--contenders", nargs="+", choices=list(CONTENDERS), default=list(CONTENDERS))
    parser.add_argument(
        "--quick", action="store_true", help="a tiny smoke run (writes to output/ by default)"
    )
    parser.add_argument("--report_only", action="store_true", help="rebuild the reports; run nothing")
    parser.add_argument("--workers", type=int, default=2, help="runs at once (each with --threads threads)")
    parser.add_argument("--commit", action="store_true", help="git commit each record as it is written")
    parser.add_argument("--data_dir", default="../shared/glue", help="GLUE folder")
    parser.add_argument("--tasks", nargs="+", default=None, help="GLUE tasks (default: all nine)")
    parser.add_argument("--backbone", default=None, help="BERT directory (default: the bundled encoder)")
    parser.add_argument("--output", type=Path, default=None, help="default results/glue-mini")
    parser.add_argument(
        "--work_dir", type=Path, default=None, help="run.py outputs (default output/glue-mini)"
    )
    parser.add_argument("--features_cache_dir", type=Path, default=Path("cache/features"))
    parser.add_argument(
        "--probe", type=Path, default=Path("results/probe.json"), help="the floor to compare with"
    )
    for name, value in FULL.items():
        parser.add_argument(f"--{name}", type=type(value), default=None, help=f"default {value}")


def settings_from(args: argparse.Namespace) -> Settings:
    values = dict(QUICK if args.quick else FULL)
    values.update({name: getattr(args, name) for name in FULL if getattr(args, name) is not None})
    for name, value in values.items():
        if isinstance(value, (int, float)) and value <= 0:
            raise UsageError(f"--{name} must be positive, got {value}")
    backbone = args.backbone or DEFAULT_BACKBONE
    if encoder_layer_count(backbone) is None:
        raise UsageError(f"--backbone {backbone} is not a BERT directory (no config.json): pass a local BERT")
    if not Path(args.data_dir).is_dir():
        raise UsageError(f"--data_dir {args.data_dir} does not exist: point it at the GLUE folder")
    return Settings(
        data_dir=str(args.data_dir), backbone=str(backbone), tasks=tuple(resolve_tasks(args.tasks)), **values
    )


def open_study(output: Path, settings: Settings, command: str, report_only: bool) -> dict:
    """study.json: the settings (a different setting in the same folder is refused) and the commands."""
    study_file = output / "study.json"
    study = {"settings": dataclasses.asdict(settings), "commands": []}
    if study_file.exists():
        study = read_json(study_file)
        if study["settings"] != json.loads(json.dumps(dataclasses.asdict(settings))):
            raise UsageError(
                f"{output} holds runs made with other settings ({study_file}): pass the same"
                " options, or another --output"
            )
    if command not in study["commands"] and not report_only:
        study["commands"].append(command)
    write_json(study_file, study)
    return study


def run(args: argparse.Namespace, command: str) -> None:
    settings = settings_from(args)
    output = args.output or Path("output/glue-mini-quick" if args.quick else "results/glue-mini")
    work_dir = args.work_dir or Path("output/glue-mini-quick/work" if args.quick else "output/glue-mini")
    study = open_study(output, settings, command, args.report_only)
    pending = [] if args.report_only else [
        (seed, name) for seed in args.seeds for name in args.contenders
        if not (output / "runs" / f"{name}-seed{seed}.json").exists()
    ]  # fmt: skip
    done = len(args.seeds) * len(args.contenders) - len(pending)
    if done and not args.report_only:
        print(f"[glue-mini] {done} runs done before, skipped", flush=True)
    lock = threading.Lock()

    def one(seed: int, name: str) -> None:
        contender = CONTENDERS[name]
        print(f"[glue-mini] {name} seed {seed}: running (logs under {work_dir})", flush=True)
        if contender.single_task:
            record = run_single_task(
                contender, seed, settings, work_dir, args.features_cache_dir, output / "runs" / "parts"
            )
        else:
            record = run_multitask(contender, seed, settings, work_dir, args.features_cache_dir)
        with lock:
            save_record(output, record)
            report.write_reports(output, settings, study["commands"], args.probe, list(CONTENDERS))
            print(
                f"[glue-mini] {name} seed {seed}: GLUE average {x100(record['glue_average'])} in"
                f" {record['wall_seconds'] / 60:.1f} min",
                flush=True,
            )
            if args.commit:
                git_commit([output], f"glue-mini: {name} seed {seed}")

    with ThreadPoolExecutor(max_workers=max(1, args.workers)) as pool:
        for future in [pool.submit(one, seed, name) for seed, name in pending]:
            future.result()
    report.write_reports(output, settings, study["commands"], args.probe, list(CONTENDERS))
