"""The small-scale reproduction study: CA-MTL's claims on real GLUE with the bundled 6-layer encoder.

Every contender is trained by ``run.py`` in a subprocess with the same budget of training examples
(max_steps x batch size); the single-task baseline trains one model per task and shares that budget
across tasks in proportion to their (capped) training set sizes, which is the share each task gets
in expectation under proportional multitask sampling (WNLI, outside the GLUE average, gets no model).
Each finished run writes one record ``<output>/runs/<contender>-seed<S>.json`` at once, so the study
resumes where it stopped. The table, plots and results.json are rebuilt from the records after every
run. Dev scores are those of the final evaluation (no maximum over evaluations).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from camtl.data import read_split
from camtl.errors import UsageError
from camtl.metrics import summarize
from camtl.model import encoder_layer_count
from camtl.tasks import TASKS, TRAINABLE_TASKS, evaluation_tasks, resolve_tasks

REPO_ROOT = Path(__file__).resolve().parents[2]
DEV_TASKS = tuple(evaluation_tasks(list(TRAINABLE_TASKS)))
GLUE_AVERAGE_TASKS = tuple(task for task in TRAINABLE_TASKS if task != "wnli")
COLUMN_NAMES = {task: TASKS[task].submission_file.removesuffix(".tsv") for task in DEV_TASKS}


@dataclass(frozen=True)
class Contender:
    name: str
    description: str
    layout: str = "base"
    sampling: str = "proportional"
    model_flags: tuple[str, ...] = ()  # further run.py flags (camtl's options, ablations)
    freeze_bottom_half: bool = False
    single_task: bool = False


CONTENDERS = {
    contender.name: contender
    for contender in (
        Contender(
            "single-task", "one model per task, no conditional modules", layout="none", single_task=True
        ),
        Contender(
            "vanilla-mtl", "shared encoder and heads, no conditional modules, proportional", layout="none"
        ),
        Contender("ca-mtl", "CA-MTL base layout, proportional sampling"),
        Contender("ca-mtl-mtu", "CA-MTL base layout, MT-Uncertainty sampling", sampling="mt-uncertainty"),
        Contender(
            "ca-mtl-mtu-frozen",
            "as ca-mtl-mtu, embeddings and bottom half of the encoder frozen",
            sampling="mt-uncertainty",
            freeze_bottom_half=True,
        ),
    )
}
MAIN_CONTENDERS = ("single-task", "vanilla-mtl", "ca-mtl", "ca-mtl-mtu")
# camtl's name for the bundled encoder, not its site-packages path: a study recorded in one checkout
# can be continued and reported from any other.
DEFAULT_BACKBONE = "all-MiniLM-L6-v2"


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
    max_train_samples: int
    max_eval_samples: int
    eval_steps: int
    logging_steps: int


FULL = {
    "max_steps": 150,
    "batch_size": 32,
    "learning_rate": 1e-4,
    "max_seq_length": 64,
    "max_train_samples": 1000,
    "max_eval_samples": 150,
    "eval_steps": 50,
    "logging_steps": 10,
}
QUICK = {
    "max_steps": 4,
    "batch_size": 4,
    "learning_rate": 1e-3,
    "max_seq_length": 32,
    "max_train_samples": 16,
    "max_eval_samples": 8,
    "eval_steps": 2,
    "logging_steps": 2,
}


# ---------------------------------------------------------------------------------------------------------
# Planning runs


def split_budget(total_steps: int, sizes: list[int]) -> list[int]:
    """``total_steps`` shared in proportion to ``sizes`` by largest remainder, at least one step each."""
    if total_steps < len(sizes):
        raise UsageError(
            f"--max_steps {total_steps} cannot give each of {len(sizes)} single-task runs a step"
        )
    shares = [total_steps * size / sum(sizes) for size in sizes]
    steps = [max(1, math.floor(share)) for share in shares]
    by_remainder = sorted(range(len(sizes)), key=lambda i: shares[i] - math.floor(shares[i]), reverse=True)
    for i in by_remainder[: total_steps - sum(steps)]:
        steps[i] += 1
    while sum(steps) > total_steps:  # the minimum of one step overshot: take from the largest
        steps[steps.index(max(steps))] -= 1
    return steps


def train_sizes(settings: Settings) -> dict[str, int]:
    return {
        task: len(read_split(settings.data_dir, task, "train", settings.max_train_samples))
        for task in settings.tasks
    }


def freeze_spec(backbone: str) -> str:
    """Embeddings and the bottom half of the encoder: 0-2 for the 6-layer bundled encoder."""
    return f"0-{encoder_layer_count(backbone) // 2 - 1}"


def run_flags(
    contender: Contender,
    settings: Settings,
    seed: int,
    output_dir: Path,
    cache_dir: Path,
    task: str | None = None,
    max_steps: int | None = None,
) -> list[str]:
    """run.py's flags for one run; ``task`` and ``max_steps`` for one part of the single-task contender."""
    max_steps = max_steps or settings.max_steps
    flags = [
        "--model_name_or_path", settings.backbone, "--layout", contender.layout,
        "--data_dir", settings.data_dir, "--output_dir", output_dir, "--features_cache_dir", cache_dir,
        "--do_train", "--do_eval", "--max_steps", max_steps, "--seed", seed,
        "--per_device_train_batch_size", settings.batch_size, "--learning_rate", settings.learning_rate,
        "--max_seq_length", settings.max_seq_length, "--max_train_samples", settings.max_train_samples,
        "--max_eval_samples", settings.max_eval_samples,
        "--logging_steps", min(settings.logging_steps, max_steps),
        "--save_strategy", "steps", "--save_steps", max_steps,  # one checkpoint: its trainer_state.json
        "--report_to", "none",
    ]  # fmt: skip
    if task is not None:
        flags += ["--tasks", task]
    else:
        flags += ["--tasks", *settings.tasks, "--eval_strategy", "steps", "--eval_steps", settings.eval_steps]
    flags += list(contender.model_flags)
    if contender.sampling == "mt-uncertainty":
        flags.append("--use_mt_uncertainty")
    if contender.freeze_bottom_half:
        flags += ["--freeze_encoder_layers", freeze_spec(settings.backbone)]
    return [str(flag) for flag in flags]


def execute(flags: list[str], output_dir: Path) -> float:
    """Run run.py from scratch into ``output_dir`` (its log beside it); the wall-clock seconds."""
    shutil.rmtree(output_dir, ignore_errors=True)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    log = output_dir.with_suffix(".log")
    start = time.perf_counter()
    with log.open("w") as handle:
        process = subprocess.run(
            [sys.executable, str(REPO_ROOT / "run.py"), *flags], stdout=handle, stderr=subprocess.STDOUT
        )
    if process.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise RuntimeError(f"run.py exited with {process.returncode}; its log is {log}:\n{tail}")
    return time.perf_counter() - start


def read_run(output_dir: Path, max_steps: int, batch_size: int) -> dict:
    """The outputs of one finished run.py as the fields of a record."""
    metrics = json.loads((output_dir / "eval_results.json").read_text())
    history = json.loads((output_dir / "eval_history.json").read_text())
    sampling = json.loads((output_dir / "sampling_summary.json").read_text())
    parameters = json.loads((output_dir / "parameter_report.json").read_text())
    state = json.loads((output_dir / f"checkpoint-{max_steps}" / "trainer_state.json").read_text())
    tasks = [key.split("/")[1] for key in sampling if key.endswith("/examples_drawn")]
    task_mix = [
        {"step": entry["step"], "drawn": {task: entry[f"sampling/{task}/examples_drawn"] for task in tasks}}
        for entry in state["log_history"]
        if f"sampling/{tasks[0]}/examples_drawn" in entry
    ]
    return {
        "scores": {task: values["score"] for task, values in metrics.items() if isinstance(values, dict)},
        "glue_average": metrics["glue_average"],
        "metrics": metrics,
        "examples_seen": sum(sampling[f"sampling/{task}/examples_drawn"] for task in tasks),
        "percent_data_used": sampling["sampling/percent_used_all"],
        "trainable_params": parameters["trainable"],
        "total_params": parameters["total"],
        "eval_history": [
            {
                "step": e["step"],
                "examples_seen": e["step"] * batch_size,
                "glue_average": e["results"]["glue_average"],
            }
            for e in history["evaluations"]
        ],
        "task_mix": task_mix,
    }


def write_json(path: Path, value) -> None:
    """Write atomically: an interrupted study never leaves half a record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(handle, "w") as f:
        f.write(json.dumps(value, indent=2) + "\n")
    os.replace(temp, path)


def run_multitask(
    contender: Contender, seed: int, settings: Settings, work_dir: Path, cache_dir: Path
) -> dict:
    output_dir = work_dir / f"{contender.name}-seed{seed}"
    flags = run_flags(contender, settings, seed, output_dir, cache_dir)
    wall_seconds = execute(flags, output_dir)
    return {
        "contender": contender.name,
        "seed": seed,
        **read_run(output_dir, settings.max_steps, settings.batch_size),
        "wall_seconds": wall_seconds,
        "command": " ".join(["python run.py", *flags]),
    }


def run_single_task(
    contender: Contender, seed: int, settings: Settings, work_dir: Path, cache_dir: Path, parts_dir: Path
) -> dict:
    """One run per task (each resumable on its own), combined into one record."""
    sizes = train_sizes(settings)
    budget = dict(zip(sizes, split_budget(settings.max_steps, list(sizes.values())), strict=True))
    # WNLI's share is left unspent: it is outside the GLUE average, and run.py cannot evaluate a model
    # trained on WNLI alone (camtl.metrics.glue_average has no task to average and raises).
    budget = {task: steps for task, steps in budget.items() if task in GLUE_AVERAGE_TASKS}
    if not budget:
        raise UsageError("the single-task contender needs a task other than wnli: add one to --tasks")
    parts = {}
    for task, steps in budget.items():
        part_file = parts_dir / f"{contender.name}-seed{seed}-{task}.json"
        if not part_file.exists():
            output_dir = work_dir / f"{contender.name}-seed{seed}" / task
            flags = run_flags(contender, settings, seed, output_dir, cache_dir, task=task, max_steps=steps)
            wall_seconds = execute(flags, output_dir)
            part = read_run(output_dir, steps, settings.batch_size)
            part.update(train_examples=sizes[task], wall_seconds=wall_seconds, command=" ".join(flags))
            write_json(part_file, part)
        parts[task] = json.loads(part_file.read_text())
    metrics = summarize({task: values for part in parts.values() for task, values in part["metrics"].items()
                         if isinstance(values, dict)})  # fmt: skip
    used = sum(part["percent_data_used"] * part["train_examples"] / 100 for part in parts.values())
    trained_sizes = sum(part["train_examples"] for part in parts.values())
    examples_seen = sum(part["examples_seen"] for part in parts.values())
    return {
        "contender": contender.name,
        "seed": seed,
        "scores": {task: values["score"] for task, values in metrics.items() if isinstance(values, dict)},
        "glue_average": metrics["glue_average"],
        "metrics": metrics,
        "examples_seen": examples_seen,
        "percent_data_used": round(100 * used / trained_sizes, 2),
        "trainable_params": sum(part["trainable_params"] for part in parts.values()),
        "total_params": sum(part["total_params"] for part in parts.values()),
        "eval_history": [
            {
                "step": settings.max_steps,
                "examples_seen": examples_seen,
                "glue_average": metrics["glue_average"],
            }
        ],  # fmt: skip
        "task_mix": [],
        "steps_per_task": budget,
        "wall_seconds": sum(part["wall_seconds"] for part in parts.values()),
        "command": "; ".join(f"python run.py {part['command']}" for part in parts.values()),
    }


# ---------------------------------------------------------------------------------------------------------
# Reporting


def mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def summarize_records(records: list[dict]) -> dict[str, dict]:
    """Per contender (in CONTENDERS order): seeds, mean and std of each task's score and of the average."""
    summary = {}
    for name in CONTENDERS:
        runs = [r for r in records if r["contender"] == name]
        if not runs:
            continue
        tasks = [task for task in DEV_TASKS if all(task in r["scores"] for r in runs)]
        summary[name] = {
            "seeds": sorted(r["seed"] for r in runs),
            "scores": {task: mean_std([r["scores"][task] for r in runs]) for task in tasks},
            "glue_average": mean_std([r["glue_average"] for r in runs]),
            "trainable_params": statistics.mean(r["trainable_params"] for r in runs),
            "percent_data_used": statistics.mean(r["percent_data_used"] for r in runs),
            "examples_seen": statistics.mean(r["examples_seen"] for r in runs),
            "wall_seconds": statistics.mean(r["wall_seconds"] for r in runs),
        }
    return summary


def backbone_label(backbone: str) -> str:
    return "the bundled all-MiniLM-L6-v2 (6 x 384)" if backbone == DEFAULT_BACKBONE else f"`{backbone}`"


def format_table(summary: dict[str, dict], settings: Settings, commands: list[str]) -> str:
    """The markdown table: scores x100 as mean +- std over seeds."""

    def cell(value: dict | None, seeds: int) -> str:
        if value is None:
            return "-"
        return f"{100 * value['mean']:.1f}" + (f" ± {100 * value['std']:.1f}" if seeds > 1 else "")

    tasks = [task for task in COLUMN_NAMES if any(task in row["scores"] for row in summary.values())]
    header = ["contender", "seeds", *(COLUMN_NAMES[task] for task in tasks), "avg", "trainable params",
              "% data used", "examples seen", "min/run"]  # fmt: skip
    lines = [
        "# glue-mini: CA-MTL at small scale",
        "",
        f"Backbone {backbone_label(settings.backbone)}, {settings.max_steps} steps x batch"
        f" {settings.batch_size} = {settings.max_steps * settings.batch_size} training examples per run,"
        f" lr {settings.learning_rate},"
        f" max_seq_length {settings.max_seq_length}, at most {settings.max_train_samples} training and"
        f" {settings.max_eval_samples} dev examples per task. Dev scores x100 (final evaluation), mean ± std"
        " over seeds; avg = GLUE average without WNLI, MNLI-m and MNLI-mm counted separately.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for name, row in summary.items():
        seeds = len(row["seeds"])
        cells = [
            name,
            str(seeds),
            *(cell(row["scores"].get(task), seeds) for task in tasks),
            f"**{cell(row['glue_average'], seeds)}**",
            f"{row['trainable_params'] / 1e6:.1f} M",
            f"{row['percent_data_used']:.1f}",
            f"{row['examples_seen']:.0f}",
            f"{row['wall_seconds'] / 60:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Contenders:", ""]
    lines += [f"- `{name}`: {CONTENDERS[name].description}" for name in summary]
    lines += ["", "Made by:", "", *(f"    {command}" for command in commands)]
    return "\n".join(lines) + "\n"


def plot_learning_curves(records: list[dict], path: Path) -> None:
    """Dev GLUE average against training examples seen, mean over seeds, one line per contender."""
    figure = Figure(figsize=(7, 4.5))
    axes = figure.subplots()
    for name in CONTENDERS:
        runs = [r for r in records if r["contender"] == name]
        if not runs:
            continue
        common = set.intersection(*({e["examples_seen"] for e in r["eval_history"]} for r in runs))
        points = sorted(
            (seen, statistics.mean(e["glue_average"] for r in runs for e in r["eval_history"]
                                   if e["examples_seen"] == seen))
            for seen in common
        )  # fmt: skip
        axes.plot(
            [x for x, _ in points], [100 * y for _, y in points], marker="o", label=f"{name} (n={len(runs)})"
        )
    axes.set_xlabel("training examples seen")
    axes.set_ylabel("dev GLUE average x100 (without WNLI)")
    axes.set_title("Dev average during training (single-task: final models only)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def task_shares(record: dict) -> tuple[list[int], dict[str, list[float]]]:
    """Share of each task among the examples trained on in each logging interval of one run."""
    steps, shares = [], {task: [] for task in record["task_mix"][0]["drawn"]}
    previous = dict.fromkeys(shares, 0)
    for entry in record["task_mix"]:
        interval = {task: entry["drawn"][task] - previous[task] for task in shares}
        total = sum(interval.values())
        if total:
            steps.append(entry["step"])
            for task in shares:
                shares[task].append(interval[task] / total)
        previous = entry["drawn"]
    return steps, shares


def plot_task_mix(records: list[dict], path: Path, batch_size: int) -> None:
    """The task mix over time of each multitask contender (mean over seeds): MT-Uncertainty against
    proportional sampling."""
    panels = {}
    for name in CONTENDERS:
        runs = [task_shares(r) for r in records if r["contender"] == name and r["task_mix"]]
        if runs:
            steps = runs[0][0]
            panels[name] = (steps, {t: [statistics.mean(s[t][i] for _, s in runs) for i in range(len(steps))]
                                    for t in runs[0][1]})  # fmt: skip
    if not panels:
        return
    columns = min(2, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(6 * columns, 3.2 * rows))
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, (name, (steps, shares)) in zip(axes, panels.items(), strict=False):
        ax.stackplot([s * batch_size for s in steps], *shares.values(), labels=list(shares))
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("training examples seen")
        ax.set_ylabel("share of examples")
        ax.set_ylim(0, 1)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def load_records(output: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted((output / "runs").glob("*-seed*.json"))]


def write_report(output: Path, settings: Settings, commands: list[str]) -> list[dict]:
    """table.md, results.json and the two plots, from the records in ``output/runs``."""
    records = load_records(output)
    summary = summarize_records(records)
    (output / "table.md").write_text(format_table(summary, settings, commands))
    write_json(
        output / "results.json",
        {
            "commands": commands,
            "settings": dataclasses.asdict(settings),
            "contenders": summary,
            "runs": records,
        },
    )
    plot_learning_curves(records, output / "dev_average_vs_examples.png")
    plot_task_mix(records, output / "task_mix.png", settings.batch_size)
    return records


# ---------------------------------------------------------------------------------------------------------
# The program


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--contenders", nargs="+", choices=list(CONTENDERS), default=list(MAIN_CONTENDERS))
    parser.add_argument(
        "--quick", action="store_true", help="a tiny smoke run (writes to output/ by default)"
    )
    parser.add_argument(
        "--report_only", action="store_true", help="rebuild table, plots and JSON; run nothing"
    )
    parser.add_argument("--data_dir", default="../shared/glue", help="GLUE folder")
    parser.add_argument("--tasks", nargs="+", default=None, help="GLUE tasks (default: all nine)")
    parser.add_argument("--backbone", default=None, help="BERT directory (default: the bundled encoder)")
    parser.add_argument("--output", type=Path, default=None, help="default results/glue-mini")
    parser.add_argument(
        "--work_dir", type=Path, default=None, help="run.py outputs (default output/glue-mini)"
    )
    parser.add_argument("--features_cache_dir", type=Path, default=Path("cache/glue-mini-features"))
    for name, value in FULL.items():
        parser.add_argument(f"--{name}", type=type(value), default=None, help=f"default {value}")


def settings_from(args: argparse.Namespace) -> Settings:
    values = dict(QUICK if args.quick else FULL)
    values.update({name: getattr(args, name) for name in FULL if getattr(args, name) is not None})
    for name, value in values.items():
        if value <= 0:
            raise UsageError(f"--{name} must be positive, got {value}")
    backbone = args.backbone or DEFAULT_BACKBONE
    if encoder_layer_count(backbone) is None:
        raise UsageError(f"--backbone {backbone} is not a BERT directory (no config.json): pass a local BERT")
    if not Path(args.data_dir).is_dir():
        raise UsageError(f"--data_dir {args.data_dir} does not exist: point it at the GLUE folder")
    tasks = tuple(resolve_tasks(args.tasks))
    return Settings(data_dir=str(args.data_dir), backbone=str(backbone), tasks=tasks, **values)


def run(args: argparse.Namespace, command: str) -> None:
    settings = settings_from(args)
    default_output = Path("output/glue-mini-quick") if args.quick else Path("results/glue-mini")
    output = args.output or default_output
    work_dir = args.work_dir or (
        Path("output/glue-mini-quick/work") if args.quick else Path("output/glue-mini")
    )
    study_file = output / "study.json"
    study = {"settings": dataclasses.asdict(settings), "commands": []}
    if study_file.exists():
        study = json.loads(study_file.read_text())
        if study["settings"] != json.loads(json.dumps(dataclasses.asdict(settings))):
            raise UsageError(
                f"{output} holds runs made with other settings ({study_file}): pass the same options,"
                " or another --output"
            )
    if command not in study["commands"] and not args.report_only:  # the commands that made runs
        study["commands"].append(command)
    write_json(study_file, study)

    if args.report_only:
        write_report(output, settings, study["commands"])
        return
    for seed in args.seeds:
        for name in args.contenders:
            record_file = output / "runs" / f"{name}-seed{seed}.json"
            if record_file.exists():
                print(f"[glue-mini] {name} seed {seed}: done before, skipped", flush=True)
                continue
            print(f"[glue-mini] {name} seed {seed}: running (logs under {work_dir})", flush=True)
            contender = CONTENDERS[name]
            if contender.single_task:
                parts_dir = output / "runs" / "parts"
                record = run_single_task(
                    contender, seed, settings, work_dir, args.features_cache_dir, parts_dir
                )
            else:
                record = run_multitask(contender, seed, settings, work_dir, args.features_cache_dir)
            write_json(record_file, record)
            write_report(output, settings, study["commands"])
            print(
                f"[glue-mini] {name} seed {seed}: GLUE average {100 * record['glue_average']:.2f}"
                f" in {record['wall_seconds'] / 60:.1f} min",
                flush=True,
            )
    write_report(output, settings, study["commands"])
