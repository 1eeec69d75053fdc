"""``python -m camtl.bench diagnosis``: why the small runs sat at chance, measured one factor at a time.

Two groups of runs, each one ``run.py`` subprocess on the real GLUE data with the bundled encoder:

- ``cola``: single-task CoLA references (three epochs), checkpoints traced by ``camtl.bench.trace`` (class
  counts, the head's bias, the spread of its logit margins, the training loss), and the same trace inside
  one multitask run: why CoLA's MCC sat at exactly 0.
- ``factors``: all nine tasks at one wall-clock budget. A reference configuration, and variants that each
  change one factor. A variant's steps are the budget divided by its own seconds per step, measured first
  in a short calibration run (``calibration/<name>.json``), so that a factor that makes steps cheaper
  (grouped batches, shorter sequences, frozen layers) gets the steps it buys, and one that makes them
  dearer (MT-Uncertainty) pays for them.

Each finished run writes ``<output>/runs/<name>.json`` at once (the program resumes), and ``table.md`` is
rebuilt from the records; ``--commit`` commits each record as it lands.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch

from camtl.bench.common import (
    COLUMN_NAMES,
    cpu_seconds_of_children,
    execute,
    git_commit,
    markdown_table,
    read_json,
    read_run,
    replace_flags,
    train_runtime,
    write_json,
    x100,
)
from camtl.bench.trace import trace_run
from camtl.errors import UsageError

BATCH = 32
SEED = 1
CALIBRATION_STEPS = 40
COLA_STEPS = 800  # three epochs of CoLA's 8,551 training rows at batch 32


@dataclass(frozen=True)
class Variant:
    name: str
    group: str  # "cola" or "factors"
    factor: str  # what the run tests
    flags: tuple[str, ...]  # run.py flags; the group's base flags come first
    steps: int | None = None  # None: the factors budget (steps of the reference, scaled by cost when priced)
    priced: bool = False  # the factor changes the cost of a step: calibrate it against the reference
    trace: str | None = None  # the task whose head the checkpoints are traced for
    trace_points: int = 8  # checkpoints traced, evenly spaced


COLA_BASE = ("--model_name_or_path", "all-MiniLM-L6-v2", "--tasks", "cola", "--max_seq_length", "64")
# The reference of the factors group: what the single-task references and the first factor runs supported.
REFERENCE = (
    "--model_name_or_path",
    "CA-MTL-mini",
    "--max_seq_length",
    "128",
    "--learning_rate",
    "1e-4",
    "--task_sampling",
    "temperature",
    "--sampling_temperature",
    "3",
    "--train_sampling_strategy",
    "group_by_length",
    "--pooling",
    "mean",
    "--head_lr_multiplier",
    "10",
)


def cola_variants() -> list[Variant]:
    lr = ("--learning_rate",)
    return [
        Variant("cola-cls-lr2e-5", "cola", "single-task CoLA, [CLS] pooler, lr 2e-5 (the paper's)",
                COLA_BASE + lr + ("2e-5",), COLA_STEPS, "cola"),
        Variant("cola-cls-lr1e-4", "cola", "single-task CoLA, [CLS] pooler, lr 1e-4",
                COLA_BASE + lr + ("1e-4",), COLA_STEPS, "cola"),
        Variant("cola-mean-lr1e-4", "cola", "single-task CoLA, mean pooling, lr 1e-4",
                COLA_BASE + lr + ("1e-4", "--pooling", "mean"), COLA_STEPS, "cola"),
        Variant("cola-cls-lr1e-4-head10", "cola", "single-task CoLA, [CLS] pooler, lr 1e-4, heads x10",
                COLA_BASE + lr + ("1e-4", "--head_lr_multiplier", "10"), COLA_STEPS, "cola"),
        Variant("cola-camtl-cls-lr1e-4", "cola", "CA-MTL-mini on CoLA alone (top layer from scratch)",
                replace_flags(COLA_BASE, model_name_or_path="CA-MTL-mini") + lr + ("1e-4",), COLA_STEPS,
                "cola"),
    ]  # fmt: skip


def factor_variants() -> list[Variant]:
    r, change = REFERENCE, replace_flags
    rows = [  # (name, what it tests, flags, changes the cost of a step)
        ("reference", "CA-MTL-mini, T=3, lr 1e-4, heads x10, mean pooling, grouped, 128", r, False),
        ("cls-pooling", "the [CLS] pooler", change(r, pooling=None), False),
        ("heads-x1", "heads at the encoder's learning rate", change(r, head_lr_multiplier=None), False),
        ("proportional", "proportional sampling", change(r, task_sampling=None, sampling_temperature=None),
         False),
        ("vanilla", "no conditional modules (layout none)", r + ("--layout", "none"), False),
        ("example-mean", "loss: mean over examples", r + ("--loss_reduction", "example_mean"), False),
        ("lr5e-5", "learning rate 5e-5", change(r, learning_rate="5e-5"), False),
        ("mt-uncertainty", "MT-Uncertainty sampling", change(r, task_sampling="mt-uncertainty",
                                                             sampling_temperature=None), True),
        ("random-batches", "batches of a random mix of lengths", change(r, train_sampling_strategy="random"),
         True),
        ("seq64", "sequences truncated to 64 tokens", change(r, max_seq_length="64"), True),
        ("frozen-0-2", "embeddings and layers 0-2 frozen", r + ("--freeze_encoder_layers", "0-2"), True),
    ]  # fmt: skip
    traced = {"reference": "cola"}  # the reference's checkpoints trace CoLA's head inside a multitask run
    return [Variant(name, "factors", factor, flags, trace=traced.get(name), trace_points=5, priced=priced)
            for name, factor, flags, priced in rows]  # fmt: skip


VARIANTS = {v.name: v for v in [*cola_variants(), *factor_variants()]}


def base_flags(output_dir: Path, cache_dir: Path, steps: int, data_dir: str, eval_samples: int) -> list:
    return [
        "--data_dir", data_dir, "--output_dir", output_dir, "--features_cache_dir", cache_dir,
        "--do_train", "--do_eval", "--max_steps", steps, "--seed", SEED,
        "--per_device_train_batch_size", BATCH, "--max_eval_samples", eval_samples,
        "--logging_steps", min(50, steps), "--report_to", "none", "--overwrite_output_dir",
        "--save_strategy", "steps", "--save_only_model",
    ]  # fmt: skip


def calibrate(variant: Variant, args: argparse.Namespace, tag: str) -> dict:
    """Seconds per training step of ``variant``: a short run without evaluation."""
    output_dir = args.work_dir / "calibration" / f"{tag}-{variant.name}"
    flags = base_flags(output_dir, args.features_cache_dir, CALIBRATION_STEPS, args.data_dir, 1)
    flags = [f for f in flags if f != "--do_eval"] + ["--save_steps", CALIBRATION_STEPS, *variant.flags]
    load = os.getloadavg()[0]
    wall = execute(flags, output_dir, args.threads)
    runtime, _ = train_runtime(output_dir, CALIBRATION_STEPS)
    return {"steps": CALIBRATION_STEPS, "train_runtime": runtime,
            "seconds_per_step": runtime / CALIBRATION_STEPS, "wall_seconds": wall, "load_before": load,
            "load_after": os.getloadavg()[0]}  # fmt: skip


def steps_of(variant: Variant, args: argparse.Namespace) -> tuple[int, dict | None]:
    """A variant's steps: fixed; the budget; or, for a factor that changes the cost of a step, the budget
    scaled by the reference's seconds per step over the variant's, both calibrated back to back (the
    pair cached in calibration/<name>.json), so that every factor run takes the reference's time."""
    if variant.steps is not None:
        return variant.steps, None
    if not variant.priced:
        return args.budget_steps, None
    path = args.output / "calibration" / f"{variant.name}.json"
    if not path.exists():
        pair = {"reference": calibrate(VARIANTS["reference"], args, variant.name),
                "variant": calibrate(variant, args, variant.name)}  # fmt: skip
        write_json(path, pair)
    pair = read_json(path)
    ratio = pair["reference"]["seconds_per_step"] / pair["variant"]["seconds_per_step"]
    return max(10, round(args.budget_steps * ratio)), {**pair, "cost_ratio": 1 / ratio}


def run_variant(variant: Variant, args: argparse.Namespace) -> dict:
    """Train and evaluate one variant (and trace its checkpoints); its record."""
    steps, calibration = steps_of(variant, args)
    output_dir = args.work_dir / variant.name
    save_steps = math.ceil(steps / variant.trace_points) if variant.trace else steps
    flags = base_flags(output_dir, args.features_cache_dir, steps, args.data_dir, args.max_eval_samples)
    flags += ["--save_steps", save_steps, *variant.flags]
    load, cpu = os.getloadavg()[0], cpu_seconds_of_children()
    wall = execute(flags, output_dir, args.threads)
    runtime, history = train_runtime(output_dir, steps)
    record = {
        "name": variant.name,
        "group": variant.group,
        "factor": variant.factor,
        "steps": steps,
        "batch_size": BATCH,
        "seed": SEED,
        "calibration": calibration,
        **read_run(output_dir),
        "train_runtime": runtime,
        "seconds_per_step": runtime / steps,
        "wall_seconds": wall,
        "cpu_seconds": cpu_seconds_of_children() - cpu,
        "load_before": load,
        "load_after": os.getloadavg()[0],
        "threads": args.threads,
        "loss_history": [{"step": e["step"], "loss": e["loss"]} for e in history if "loss" in e],
        "command": " ".join(["python run.py", *map(str, flags)]),
    }
    if variant.trace:
        torch.set_num_threads(args.threads)
        max_seq_length = int(flags[flags.index("--max_seq_length") + 1])
        record["trace"] = trace_run(
            output_dir, variant.trace, args.data_dir, max_seq_length, args.features_cache_dir
        )
    return record


def cola_cells(record: dict) -> list[str]:
    """CoLA's predicted share of 'acceptable' on the dev rows and the final logit-margin spread."""
    trace = record.get("trace")
    if not trace:
        return ["-", "-"]
    dev = trace[-1]["dev"]
    share = dev["predicted_counts"][1] / sum(dev["predicted_counts"])
    return [f"{100 * share:.0f}%", f"{dev['margin_std']:.2f}"]


def format_traces(records: list[dict]) -> list[str]:
    """One table per traced run: CoLA's head at each checkpoint."""
    lines = []
    header = ["step", "≈ CoLA examples seen", "predicted 0 / 1 (dev)", "dev MCC", "bias b1 - b0",
              "margin mean ± std", "CoLA train loss", "other tasks' train loss (mean)"]  # fmt: skip
    for r in (r for r in records if r.get("trace")):
        share = r["examples_drawn"]["cola"] / r["examples_seen"]
        rows = []
        for e in r["trace"]:
            dev, others = e["dev"], [v for t, v in e["train_loss"].items() if t != "cola"]
            counts = " / ".join(map(str, dev["predicted_counts"]))
            rows.append([
                e["step"], f"{share * e['step'] * BATCH:,.0f}", counts, f"{dev['metrics']['mcc']:.3f}",
                f"{e['bias'][1] - e['bias'][0]:+.3f}", f"{dev['margin_mean']:+.2f} ± {dev['margin_std']:.2f}",
                f"{e['train_loss']['cola']:.3f}", f"{sum(others) / len(others):.3f}" if others else "-",
            ])  # fmt: skip
        lines += [
            "",
            f"`{r['name']}`, CoLA's head at each checkpoint (whole CoLA dev set, 322 / 721 gold):",
            "",
        ]
        lines += markdown_table(header, rows)
    return lines


def format_table(records: list[dict], commands: list[str], budget_steps: int) -> str:
    tasks = [t for t in COLUMN_NAMES if any(t in r["scores"] for r in records)]
    header = [
        "run",
        "what it tests",
        "steps",
        "s/step",
        "train min",
        *(COLUMN_NAMES[t] for t in tasks),
        "avg",
        "CoLA pred. acceptable",
        "CoLA margin std",
    ]
    rows = [
        [r["name"], r["factor"], r["steps"], f"{r['seconds_per_step']:.2f}", f"{r['train_runtime'] / 60:.1f}",
         *(x100(r["scores"].get(t)) for t in tasks), f"**{x100(r['glue_average'])}**", *cola_cells(r)]
        for r in records
    ]  # fmt: skip
    cpu_hours = sum(r["cpu_seconds"] for r in records) / 3600
    lines = [
        "# Diagnosis: one factor at a time",
        "",
        f"Seed {SEED}, batch {BATCH}, dev scores x100 on the first 1000 rows of each dev set (whole when"
        f" smaller); factors group: the reference's {budget_steps} steps, or, for a factor that changes"
        " the cost of a step, the steps that take the reference's time (both calibrated back to back)."
        " avg = GLUE average without WNLI.",
        "",
        *markdown_table(header, rows),
        *format_traces(records),
        "",
        f"CPU time of these runs: {cpu_hours:.2f} h (user + system of the run.py processes).",
        "",
        "Made by:",
        "",
        *(f"    {c}" for c in commands),
    ]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=None,
        help="default: every variant, in table order",
    )
    parser.add_argument("--data_dir", default="../shared/glue")
    parser.add_argument("--max_eval_samples", type=int, default=1000)
    parser.add_argument("--budget_steps", type=int, default=400, help="the reference's steps per factor run")
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of each run")
    parser.add_argument("--output", type=Path, default=Path("results/diagnosis"))
    parser.add_argument("--work_dir", type=Path, default=Path("output/diagnosis"))
    parser.add_argument("--features_cache_dir", type=Path, default=Path("cache/features"))
    parser.add_argument("--commit", action="store_true", help="git commit each record as it is written")
    parser.add_argument("--report_only", action="store_true")


def load_records(output: Path) -> list[dict]:
    records = {p.stem: read_json(p) for p in (output / "runs").glob("*.json")}
    return [records[name] for name in VARIANTS if name in records]


def run(args: argparse.Namespace, command: str) -> None:
    if not Path(args.data_dir).is_dir():
        raise UsageError(f"--data_dir {args.data_dir} does not exist: point it at the GLUE folder")
    study_file = args.output / "commands.json"
    commands = read_json(study_file)["commands"] if study_file.exists() else []
    if not args.report_only and command not in commands:
        commands.append(command)
        write_json(study_file, {"commands": commands})
    for name in [] if args.report_only else (args.variants or list(VARIANTS)):
        record_file = args.output / "runs" / f"{name}.json"
        if record_file.exists():
            print(f"[diagnosis] {name}: done before, skipped", flush=True)
            continue
        print(f"[diagnosis] {name}: running", flush=True)
        record = run_variant(VARIANTS[name], args)
        write_json(record_file, record)
        (args.output / "table.md").write_text(
            format_table(load_records(args.output), commands, args.budget_steps)
        )
        print(
            f"[diagnosis] {name}: GLUE average {x100(record['glue_average'])}, {record['steps']} steps,"
            f" {record['train_runtime'] / 60:.1f} min",
            flush=True,
        )
        if args.commit:
            git_commit([args.output], f"diagnosis: {name}")
    records = load_records(args.output)
    if records:
        (args.output / "table.md").write_text(format_table(records, commands, args.budget_steps))
        print(
            f"[diagnosis] {len(records)} records, mean s/step "
            f"{statistics.mean(r['seconds_per_step'] for r in records):.2f}"
        )
