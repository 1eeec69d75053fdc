"""``python -m camtl.bench parity``: does bf16 learn what fp32 learns, on the main job?

Three finished ``run.py`` output folders of one job: bf16 and fp32 from the same seed, and fp32 from
another seed. Per dev task, the bf16 - fp32 difference is set against the fp32 - fp32 difference of the
two seeds: a precision effect smaller than what a seed changes is not one a reader can see. The runs'
recorded settings must agree on everything but the precision and the seed; anything else is refused
before a table is written. Results in ``results/main-job-parity.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from camtl.bench.common import DEV_TASKS, GLUE_AVERAGE_TASKS, markdown_table
from camtl.bench.probe import read_run_results
from camtl.errors import UsageError
from camtl.training.checkpoints import recorded_run_settings
from camtl.training.run_settings import DEFINING, SETTINGS

# The two factors compared; every other setting that defines a run (camtl.training.run_settings), and
# the dev rows scored, must agree.
COMPARED = {"precision", "bf16", "fp16", "seed", "data_seed"}


def _must_agree(name: str) -> bool:
    return name not in COMPARED and (SETTINGS.get(name, DEFINING) == DEFINING or name == "max_eval_samples")


def load_run(run_dir: Path) -> tuple[dict, dict]:
    """A finished run's eval_results.json and the settings its latest checkpoint recorded."""
    results = read_run_results(run_dir / "eval_results.json")
    settings = recorded_run_settings(run_dir)
    if settings is None:
        raise UsageError(
            f"no checkpoint with a readable run_settings.json in {run_dir}: run with --save_steps at most"
            " --max_steps"
        )
    return results, settings


def check_runs(runs: dict[str, tuple[dict, dict]]) -> None:
    """The three runs are the comparison they claim to be, or one line says which is not."""
    (_, bf16), (_, fp32), (_, other) = runs.values()
    expected = {"bf16": (bf16, "bf16"), "fp32": (fp32, "fp32"), "fp32_other_seed": (other, "fp32")}
    for name, (settings, precision) in expected.items():
        if "precision" not in settings or "seed" not in settings:
            raise UsageError(
                f"--{name}'s run_settings.json records no precision or seed: rerun it with this camtl"
            )
        if settings["precision"] != precision:
            raise UsageError(
                f"--{name} ran in {settings['precision']}, not {precision}: give a {precision} run"
            )
    if bf16["seed"] != fp32["seed"] or fp32["seed"] == other["seed"]:
        raise UsageError(
            f"seeds {bf16['seed']}, {fp32['seed']}, {other['seed']}: --bf16 and --fp32 need one seed, "
            "--fp32_other_seed another"
        )
    for name, (settings, _) in expected.items():
        differing = sorted(
            k for k in settings.keys() | bf16.keys() if _must_agree(k) and settings.get(k) != bf16.get(k)
        )
        if differing:
            raise UsageError(f"--{name} and --bf16 differ in {', '.join(differing)}: compare runs of one job")


def parity_rows(bf16: dict, fp32: dict, other: dict) -> list[dict]:
    """Per dev task and the average: the three scores, the precision and the seed differences."""
    rows = []
    for task in (*DEV_TASKS, "glue_average"):
        scores = [_score(results, task) for results in (bf16, fp32, other)]
        if None in scores:
            continue
        precision, seed = scores[0] - scores[1], scores[1] - scores[2]
        rows.append({"task": task, "bf16": scores[0], "fp32": scores[1], "fp32_other_seed": scores[2],
                     "precision_difference": precision, "seed_difference": seed,
                     "within_seed_difference": abs(precision) <= abs(seed)})  # fmt: skip
    return rows


def _score(results: dict, task: str) -> float | None:
    value = results.get(task)
    return value.get("score") if isinstance(value, dict) else value


def train_runtime(run_dir: Path) -> float | None:
    """The run's train_runtime in seconds (its train_results.json); None for a run.py that predates it, and
    for a resumed run, whose time covers only the part after the resume."""
    try:
        metrics = json.loads((run_dir / "train_results.json").read_text())
        return None if "resumed_from_checkpoint" in metrics else float(metrics["train_runtime"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def format_runtimes(runtimes: dict[str, float | None]) -> list[str]:
    """A line of the three runs' training times and fp32 / bf16, when each run recorded its time."""
    if len(runtimes) != 3 or None in runtimes.values():
        return []
    bf16, fp32, other = runtimes.values()
    return [
        f"Training time (train_runtime): bf16 {bf16:,.0f} s, fp32 {fp32:,.0f} s ({fp32 / bf16:.2f}x the"
        f" bf16 run), fp32 other seed {other:,.0f} s.",
        "",
    ]


def format_parity(
    rows: list[dict], seeds: tuple[int, int], command: str, runtimes: dict[str, float | None] | None = None
) -> str:
    header = ["task", f"bf16 seed {seeds[0]}", f"fp32 seed {seeds[0]}", f"fp32 seed {seeds[1]}",
              "bf16 - fp32", "fp32 seed difference", "precision within seed difference"]  # fmt: skip
    table = [
        [
            r["task"]
            if r["task"] != "glue_average"
            else f"GLUE average ({len(GLUE_AVERAGE_TASKS)}, no WNLI)",
            *(f"{100 * r[k]:.2f}" for k in ("bf16", "fp32", "fp32_other_seed")),
            f"{100 * r['precision_difference']:+.2f}",
            f"{100 * r['seed_difference']:+.2f}",
            "yes" if r["within_seed_difference"] else "**no**",
        ]  # fmt: skip
        for r in rows
    ]
    inside = sum(r["within_seed_difference"] for r in rows if r["task"] != "glue_average")
    counted = sum(r["task"] != "glue_average" for r in rows)
    return "\n".join([
        "# The main job in bf16 and fp32: accuracy parity", "",
        "Dev scores x100 (the runs' own `--max_eval_samples`); the precision difference is set against "
        "what two fp32 seeds differ by.", "",
        *markdown_table(header, table), "",
        f"bf16 - fp32 is within the seed difference on {inside} of {counted} dev tasks.", "",
        *format_runtimes(runtimes or {}), "Made by:", "", f"    {command}", "",
    ])  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for name, what in (
        ("bf16", "bf16"),
        ("fp32", "fp32, the same seed"),
        ("fp32_other_seed", "fp32, another seed"),
    ):
        parser.add_argument(
            f"--{name}", type=Path, required=True, help=f"the run.py --output_dir of the run in {what}"
        )
    parser.add_argument("--output", type=Path, default=Path("results/main-job-parity.md"))


def run(args: argparse.Namespace, command: str) -> None:
    runs = {name: load_run(getattr(args, name)) for name in ("bf16", "fp32", "fp32_other_seed")}
    check_runs(runs)
    (bf16, settings), (fp32, _), (other, other_settings) = runs.values()
    runtimes = {name: train_runtime(getattr(args, name)) for name in runs}
    report = format_parity(
        parity_rows(bf16, fp32, other), (settings["seed"], other_settings["seed"]), command, runtimes
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    print(report)
