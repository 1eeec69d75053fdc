"""One run of the study: ``run.py`` trains and saves the model, this module predicts the dev sets from the
saved model at the study's precision and builds the run's record (scores, predictions, learning curve,
data used, parameters, times, and the machine it ran on)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import torch

from camtl.bench import report
from camtl.bench.common import (
    REPO_ROOT,
    cpu_seconds_of_children,
    execute,
    read_json,
    read_training,
    replace_flags,
    train_runtime,
    write_json,
)
from camtl.bench.study_plan import Contender, Settings, run_flags, single_task_steps
from camtl.data.collation import MultiTaskCollator
from camtl.data.features import load_features
from camtl.errors import UsageError
from camtl.model import load_model, load_tokenizer
from camtl.tasks import evaluation_tasks
from camtl.training.checkpoints import checkpoint_problem, checkpoints_in
from camtl.training.evaluation import predict_features
from camtl.training.metrics import compute_metrics, summarize
from camtl.training.precision import autocast, cpu_name


def evaluate_saved(output_dir: Path, settings: Settings, cache_dir: Path) -> tuple[dict, dict]:
    """(metrics as in eval_results.json, predictions per dev task) of the model saved in ``output_dir``, at
    the study's precision."""
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
        predicted = predict_features(
            model, dev, collator, 128, autocast=lambda: autocast(settings.precision, "cpu")
        )
        results[task] = compute_metrics(task, predicted, dev.labels.numpy())
        predictions[task] = predicted.tolist()
    return study_summary(results), predictions


def study_summary(results: dict) -> dict:
    """``summarize`` with every score defined: a correlation over constant predictions (undefined, and left
    out of run.py's averages) counts as 0, no correlation, as the paired bootstrap counts it, and is marked
    ``undefined``; so every contender's average is over the same tasks."""
    tasks = {task: metrics for task, metrics in results.items() if isinstance(metrics, dict)}
    return summarize(
        {t: m if m["score"] is not None else {**m, "score": 0.0, "undefined": True} for t, m in tasks.items()}
    )


def learning_curve(output_dir: Path, steps: int, batch_size: int, final: dict) -> list[dict]:
    """Dev scores during training (the run's own evaluations) and of the saved model, by examples seen."""
    history = output_dir / f"checkpoint-{steps}" / "evaluations.json"
    evaluations = read_json(history) if history.exists() else []
    points = [(e["step"], study_summary(e["results"])) for e in evaluations if e["step"] < steps]
    points += [(steps, final)]
    return [
        {
            "step": step,
            "examples_seen": step * batch_size,
            "glue_average": results["glue_average"],
            "scores": {t: v["score"] for t, v in results.items() if isinstance(v, dict)},
        }
        for step, results in points
    ]


def code_commit() -> str | None:
    """The commit of the code that ran (the study runs from a worktree pinned at one)."""
    found = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
    return found.stdout.strip() or None


def resumable_step(output_dir: Path) -> int | None:
    """The step of the newest complete checkpoint a stopped run left in ``output_dir``, or None."""
    for checkpoint in checkpoints_in(output_dir):
        if checkpoint_problem(checkpoint, world_size=1) is None:
            return int(checkpoint.name.split("-")[1])
    return None


def train_and_evaluate(flags: list[str], output_dir: Path, settings: Settings, cache_dir: Path) -> dict:
    """One run.py run, then the evaluation; the record fields common to every contender."""
    load, cpu = os.getloadavg()[0], cpu_seconds_of_children()
    resumed_from = resumable_step(output_dir)
    if resumed_from is not None:  # a stopped session's run continues exactly where it stopped
        flags = list(replace_flags(tuple(flags), overwrite_output_dir=None, resume_from_checkpoint="latest"))
    wall = execute(flags, output_dir, settings.threads, fresh=resumed_from is None)
    torch.set_num_threads(settings.threads)
    metrics, predictions = evaluate_saved(output_dir, settings, cache_dir)
    steps = int(flags[flags.index("--max_steps") + 1])
    runtime, history = train_runtime(output_dir, steps)
    return {
        **read_training(output_dir),
        "metrics": metrics,
        "scores": {t: v["score"] for t, v in metrics.items() if isinstance(v, dict)},
        "glue_average": metrics["glue_average"],
        "predictions": predictions,
        "learning_curve": learning_curve(output_dir, steps, settings.batch_size, metrics),
        "wall_seconds": wall,
        "resumed_from_step": resumed_from,
        "train_runtime": runtime,
        "cpu_seconds": cpu_seconds_of_children() - cpu,
        "load_before": load,
        "load_after": os.getloadavg()[0],
        "task_mix": report.task_mix_of(history),
        "command": " ".join(["python run.py", *flags]),
    }


def machine() -> dict:
    """Where a record was made: wall times compare only within one CPU."""
    return {"cpu": cpu_name(), "code_commit": code_commit(), "torch": torch.__version__}


def run_multitask(
    contender: Contender, seed: int, settings: Settings, work_dir: Path, cache_dir: Path
) -> dict:
    output_dir = work_dir / f"{contender.name}-seed{seed}"
    flags = run_flags(contender, settings, seed, output_dir, cache_dir)
    return {
        "contender": contender.name,
        "seed": seed,
        "precision": settings.precision,
        "threads": settings.threads,
        **machine(),
        **train_and_evaluate(flags, output_dir, settings, cache_dir),
    }


def part_file(parts_dir: Path, contender: Contender, seed: int, task: str) -> Path:
    return parts_dir / f"{contender.name}-seed{seed}-{task}.json"


def run_single_task_part(
    contender: Contender,
    seed: int,
    task: str,
    settings: Settings,
    work_dir: Path,
    cache_dir: Path,
    parts_dir: Path,
) -> None:
    """One model of the single-task contender, a unit of the queue of its own: its part file."""
    steps = single_task_steps(settings)[task]
    output_dir = work_dir / f"{contender.name}-seed{seed}" / task
    flags = run_flags(contender, settings, seed, output_dir, cache_dir, task=task, max_steps=steps)
    record = {"steps": steps, **machine(), **train_and_evaluate(flags, output_dir, settings, cache_dir)}
    write_json(part_file(parts_dir, contender, seed, task), record)


def single_task_record(contender: Contender, seed: int, settings: Settings, parts_dir: Path) -> dict | None:
    """The single-task contender's record, one model per task combined; None while a part is missing."""
    tasks = list(single_task_steps(settings))
    if not tasks:
        raise UsageError("the single-task contender needs a task other than wnli: add one to --tasks")
    if not all(part_file(parts_dir, contender, seed, task).exists() for task in tasks):
        return None
    parts = {task: read_json(part_file(parts_dir, contender, seed, task)) for task in tasks}
    metrics = summarize(
        {t: v for p in parts.values() for t, v in p["metrics"].items() if isinstance(v, dict)}
    )
    totals = {
        key: sum(p[key] for p in parts.values())
        for key in ("examples_seen", "trainable_params", "total_params", "wall_seconds", "train_runtime",
                    "cpu_seconds")
    }  # fmt: skip
    return {
        "contender": contender.name,
        "seed": seed,
        "precision": settings.precision,
        "threads": settings.threads,
        "cpu": sorted({p["cpu"] for p in parts.values()}),
        **totals,
        "metrics": metrics,
        "glue_average": metrics["glue_average"],
        "scores": {t: v["score"] for t, v in metrics.items() if isinstance(v, dict)},
        "predictions": {t: v for p in parts.values() for t, v in p["predictions"].items()},
        "steps_per_task": {t: p["steps"] for t, p in parts.items()},
        "examples_per_task": {t: p["examples_seen"] for t, p in parts.items()},
        "percent_data_used": None,
        "percent_used_per_task": {t: p["percent_data_used"] for t, p in parts.items()},
        "task_mix": [],
        # the parts resumed after a stop, by task (their earlier part's time is not in train_runtime)
        "resumed_from_step": {
            t: p["resumed_from_step"] for t, p in parts.items() if p.get("resumed_from_step") is not None
        }
        or None,
        "command": "; ".join(p["command"] for p in parts.values()),
    }


def save_record(output: Path, record: dict) -> Path:
    """``runs/<contender>-seed<S>.json`` and its predictions beside it (kept out of the record itself)."""
    stem = output / "runs" / f"{record['contender']}-seed{record['seed']}"
    write_json(stem.with_suffix(".predictions.json"), record.pop("predictions"))
    write_json(stem.with_suffix(".json"), record)
    return stem.with_suffix(".json")
