"""The multi-task scenarios beyond GLUE, judged by whether they learn.

Each scenario trains one CA-MTL model on a mix of task types (regression, classification, multiple
choice, masked LM, token classification; built-in tasks and a task file), evaluates and predicts, reloads
the saved model and evaluates it again, and sets every task's dev score beside two baselines: what
predicting the majority class scores on the same dev rows (the majority choice for multiple choice, no
entity for token classification; none for regression and masked LM) and, for GLUE tasks, the frozen-feature
linear-probe floor (``results/probe.md``). A task has learned when it beats both.

    python -m camtl.bench scenarios [--scenarios NAME ...] [--steps NAME=N ...] [--precision fp32]

Writes ``results/scenarios/<name>.txt`` (the command, time, scores, baselines) and ``<name>.json``.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path

import numpy as np

from camtl.bench.common import execute, read_json, write_json
from camtl.bench.probe import load_floor
from camtl.data.sources import task_data_dir
from camtl.data.splits import read_split
from camtl.errors import UsageError
from camtl.model import read_saved_config
from camtl.tasks import TASKS, register_saved
from camtl.tasks.spec import Task
from camtl.training.metrics import compute_metrics, format_results_table
from camtl.training.precision import cpu_name

GLUE = ("cola", "sst-2", "mrpc", "sts-b", "qqp", "mnli", "qnli", "rte", "wnli")
# name -> (the mix, its default steps of COMMON's batch)
SCENARIOS = {
    "stsb-rte-csqa": (("--tasks", "sts-b", "rte", "commonsenseqa"), 400),
    "sst2-wikitext-mlm": (("--tasks", "sst-2", "wikitext2-mlm", "--task_weights", "wikitext2-mlm=0.5"), 200),
    "superglue-task-file": (("--task_file", "examples/superglue_tasks.yaml"), 200),
    "glue-superglue-wnut-mtu": (
        ("--tasks", *GLUE, "cb", "copa", "wic", "wnut17", "--use_mt_uncertainty"), 120
    ),
}  # fmt: skip
COMMON = (
    "--model_name_or_path", "CA-MTL-mini", "--max_seq_length", "128", "--per_device_train_batch_size", "16",
    "--learning_rate", "1e-4", "--train_sampling_strategy", "group_by_length", "--max_eval_samples", "1000",
    "--max_predict_samples", "200", "--logging_steps", "100", "--save_strategy", "no", "--report_to", "none",
    "--seed", "1", "--overwrite_output_dir", "--do_train", "--do_eval", "--do_predict",
)  # fmt: skip
DATA_DIRS = ("../shared/glue", "../shared/data")


def majority_score(task: str, data_dirs: list[str], max_rows: int | None) -> float | None:
    """The task's score when every dev row gets its most common label (token classification: no entity);
    None where no class is predicted (regression, masked LM)."""
    spec = TASKS[task]
    if spec.type in ("regression", "masked_lm"):
        return None
    dev = read_split(task_data_dir(task, data_dirs), task, "dev", max_rows)
    if spec.type == "token_classification":
        if "O" not in spec.labels:
            return None
        outside = spec.labels.index("O")
        return compute_metrics(task, [[outside] * len(tags) for tags in dev.labels], dev.labels)["score"]
    majority = Counter(dev.labels).most_common(1)[0][0]
    return compute_metrics(task, np.full(len(dev), majority), np.asarray(dev.labels))["score"]


def baselines(results: dict, data_dirs: list[str], max_rows: int, probe: Path) -> list[dict]:
    """Per scored dev task: its score, the majority-class score, the probe floor, whether it beats both."""
    floor = load_floor(probe, max_rows) if probe.is_file() else {}
    rows = []
    for task, metrics in results.items():
        if not isinstance(metrics, dict) or metrics.get("score") is None:
            continue
        majority = majority_score(task, data_dirs, max_rows)
        bars = [b for b in (majority, floor.get(task)) if b is not None]
        rows.append({"task": task, "score": metrics["score"], "majority": majority, "floor": floor.get(task),
                     "learned": all(metrics["score"] > b for b in bars) if bars else None})  # fmt: skip
    return rows


def format_baselines(rows: list[dict]) -> list[str]:
    def cell(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.2f}"

    lines = [f"{'task':<14} {'score':>7} {'majority':>9} {'floor':>7}  learned"]
    for r in rows:
        learned = {True: "yes", False: "NO", None: "-"}[r["learned"]]
        lines.append(
            f"{r['task']:<14} {cell(r['score']):>7} {cell(r['majority']):>9} {cell(r['floor']):>7}  {learned}"
        )
    judged = [r for r in rows if r["learned"] is not None]
    learned = sum(r["learned"] for r in judged)
    lines.append(
        f"above the majority class and the floor (where one exists): {learned} of {len(judged)} tasks"
    )
    return lines


def run_scenario(
    name: str,
    steps: int,
    precision: str,
    probe: Path,
    common: tuple[str, ...] = COMMON,
    data_dirs: tuple[str, ...] = DATA_DIRS,
    work_dir: Path = Path("output/scenarios"),
) -> dict:
    """Train, evaluate and predict one scenario (``common`` flags, its mix, ``steps``), reload the saved
    model and evaluate it again; its record."""
    mix, _ = SCENARIOS[name]
    out = work_dir / name
    flags = [*common, "--data_dir", *data_dirs, "--output_dir", str(out), *mix, "--max_steps", str(steps),
             "--precision", precision]  # fmt: skip
    rows = common[common.index("--max_eval_samples") + 1]  # the baselines are scored on the same dev rows
    seconds = execute(flags, out)
    reloaded = out.with_name(f"{name}-reloaded")
    execute(["--model_name_or_path", str(out), "--data_dir", *data_dirs, "--output_dir", str(reloaded),
             "--max_eval_samples", rows, "--report_to", "none", "--do_eval", "--precision", precision],
            reloaded)  # fmt: skip
    for spec in read_saved_config(str(out)).get("task_specs", {}).values():
        register_saved(Task.from_dict(spec))  # a task file's tasks, for their dev sets
    results = read_json(out / "eval_results.json")
    return {
        "scenario": name, "steps": steps, "precision": precision, "cpu": cpu_name(), "cores": os.cpu_count(),
        "wall_seconds": seconds, "command": " ".join(["python run.py", *flags]), "results": results,
        "baselines": baselines(results, list(data_dirs), int(rows), probe),
        "reload_identical": results == read_json(reloaded / "eval_results.json"),
        "predictions": sorted(p.name for p in (out / "predictions").glob("*.jsonl")),
    }  # fmt: skip


def format_record(record: dict) -> str:
    return "\n".join([
        f"$ {record['command']}",
        f"({record['wall_seconds']:.0f} s training, evaluating and predicting on {record['cores']} cores,"
        f" {record['precision']}, {record['cpu']})",
        format_results_table(record["results"]), "",
        *format_baselines(record["baselines"]), "",
        "reloaded and evaluated again: same eval_results.json: "
        + ("yes" if record["reload_identical"] else "NO"),
        f"predictions: {' '.join(record['predictions']) or '-'}", "",
    ])  # fmt: skip


def parse_steps(values: list[str]) -> dict[str, int]:
    steps = {}
    for value in values:
        name, _, count = value.partition("=")
        if name not in SCENARIOS or not count.isdigit() or int(count) < 1:
            raise UsageError(f"--steps {value}: give NAME=N with N >= 1, NAME one of {', '.join(SCENARIOS)}")
        steps[name] = int(count)
    return steps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument(
        "--steps", nargs="+", default=[], metavar="NAME=N", help="a scenario's training steps"
    )
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="fp32",
                        help="fp32: the study's precision (results/glue-mini/study.json)")  # fmt: skip
    parser.add_argument("--output", type=Path, default=Path("results/scenarios"))
    parser.add_argument("--probe", type=Path, default=Path("results/probe.json"))


def run(args: argparse.Namespace, command: str) -> None:
    steps = {name: count for name, (_, count) in SCENARIOS.items()} | parse_steps(args.steps)
    for missing in (d for d in DATA_DIRS if not Path(d).is_dir()):
        raise UsageError(f"no {missing}: the scenarios read the GLUE mirror and ../shared/data")
    args.output.mkdir(parents=True, exist_ok=True)
    for name in args.scenarios:
        record = run_scenario(name, steps[name], args.precision, args.probe) | {"program": command}
        write_json(args.output / f"{name}.json", record)
        (args.output / f"{name}.txt").write_text(format_record(record))
        print(format_record(record), flush=True)
