"""The study's reports, rebuilt from its records: the contenders' table against the probe floor, paired
differences per seed with bootstrap intervals, the paper's claims, and the task mix of MT-Uncertainty.

Intervals: a paired bootstrap over seeds and dev examples. Each of ``BOOTSTRAP`` replicates draws the
seeds with replacement and, per task, the dev rows with replacement (the same rows for both contenders
and every seed), and recomputes every GLUE metric; the interval is the 2.5th-97.5th percentile of the
replicates' difference of GLUE averages. It covers seed-to-seed variation and the finite dev sets.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

from camtl.bench import figures
from camtl.bench.common import (
    COLUMN_NAMES,
    GLUE_AVERAGE_TASKS,
    backbone_label,
    markdown_table,
    read_json,
    write_json,
    x100,
)
from camtl.data.splits import read_split
from camtl.tasks import TASKS, evaluation_tasks

BOOTSTRAP = 2000
NON_INFERIORITY = 0.01  # "matches": the interval's lower end above -1 GLUE point
# (contender, baseline, the paper's claim, the paper's numbers, kind): kind "beats" or "matches"
COMPARISONS = (
    (
        "ca-mtl",
        "vanilla",
        "CA-MTL beats the vanilla multi-task baseline",
        "80.61 -> 83.12 dev (ablation)",
        "beats",
    ),
    ("+attention", "vanilla", "conditional attention helps", "ablation, Table 4", "beats"),
    ("+adapter", "+attention", "the conditional adapter helps further", "ablation, Table 4", "beats"),
    ("ca-mtl", "+adapter", "conditional layer norm helps further", "ablation, Table 4", "beats"),
    ("ca-mtl-mtu", "ca-mtl", "MT-Uncertainty improves CA-MTL", "83.12 -> 84.03 dev", "beats"),
    ("ca-mtl", "single-task", "CA-MTL matches or beats single-task fine-tuning", "GLUE test", "matches"),
    ("ca-mtl-mtu", "single-task", "CA-MTL + MT-U surpasses single-task fine-tuning", "GLUE test", "beats"),
    (
        "single-task",
        "vanilla",
        "vanilla MTL falls below single-task models",
        "79.6 vs 77.5 GLUE test",
        "beats",
    ),
    ("mtu-eval-scoring", "ca-mtl-mtu", "camtl: MT-U scoring without dropout", "-", "beats"),
    ("example-mean", "ca-mtl", "camtl: loss as the mean over examples", "-", "beats"),
    ("per-block-film", "ca-mtl", "camtl: one FiLM per block of M(z)", "-", "beats"),
    ("adapter-gelu", "ca-mtl", "camtl: GELU inside the adapter", "-", "beats"),
    ("mean-pooling", "ca-mtl", "camtl: mean pooling", "-", "beats"),
    ("heads-x10", "ca-mtl", "camtl: heads at 10x the learning rate", "-", "beats"),
)


def task_mix_of(log_history: list[dict]) -> list[dict]:
    """Examples drawn per task at every logging step of a run."""
    entries = [e for e in log_history if any(k.endswith("/examples_drawn") for k in e)]
    return [
        {
            "step": e["step"],
            "drawn": {k.split("/")[1]: v for k, v in e.items() if k.endswith("/examples_drawn")},
        }
        for e in entries
    ]


def load_records(output: Path) -> list[dict]:
    paths = (
        p for p in sorted((output / "runs").glob("*-seed*.json")) if not p.name.endswith(".predictions.json")
    )
    return [read_json(p) for p in paths]


def resampled_scores(task: str, predictions: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The task's GLUE score on each bootstrap replicate (rows: (B, n) indices), vectorized."""
    p, y = predictions[rows], labels[rows]
    if TASKS[task].is_regression:
        return (_rowwise_pearson(p, y) + _rowwise_pearson(rankdata(p, axis=1), rankdata(y, axis=1))) / 2
    p, y = p.astype(np.int64), y.astype(np.int64)
    accuracy = (p == y).mean(1)
    if "f1" in TASKS[task].metrics:
        tp, fp, fn = ((p == 1) & (y == 1)).sum(1), ((p == 1) & (y == 0)).sum(1), ((p == 0) & (y == 1)).sum(1)
        f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros(len(p)), where=(2 * tp + fp + fn) > 0)
        return (accuracy + f1) / 2
    if "mcc" in TASKS[task].metrics:
        tp, tn = ((p == 1) & (y == 1)).sum(1), ((p == 0) & (y == 0)).sum(1)
        fp, fn = ((p == 1) & (y == 0)).sum(1), ((p == 0) & (y == 1)).sum(1)
        denominator = np.sqrt(((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)).astype(np.float64))
        return np.divide(tp * tn - fp * fn, denominator, out=np.zeros(len(p)), where=denominator > 0)
    return accuracy


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    denominator = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    return np.divide((a * b).sum(1), denominator, out=np.zeros(len(a)), where=denominator > 0)


def paired_bootstrap(
    a: dict[int, dict],
    b: dict[int, dict],
    labels: dict[str, np.ndarray],
    replicates: int = BOOTSTRAP,
    seed: int = 0,
) -> dict:
    """Difference of GLUE averages (a - b) over the seeds both have: its mean, per seed, and the interval.

    ``a`` and ``b`` map a seed to that run's dev predictions per task.
    """
    seeds = sorted(set(a) & set(b))
    tasks = [t for t in GLUE_AVERAGE_TASKS if t in labels and all(t in a[s] and t in b[s] for s in seeds)]
    rng = np.random.default_rng(seed)
    difference = np.zeros((replicates, len(seeds)))
    for task in tasks:
        rows = rng.integers(0, len(labels[task]), size=(replicates, len(labels[task])))
        for i, s in enumerate(seeds):
            scores = [resampled_scores(task, np.asarray(r[s][task]), labels[task], rows) for r in (a, b)]
            difference[:, i] += (scores[0] - scores[1]) / len(tasks)
    picked = rng.integers(0, len(seeds), size=(replicates, len(seeds)))
    replicate_means = np.take_along_axis(difference, picked, axis=1).mean(1)
    per_seed = {s: _glue_average_difference(a[s], b[s], labels, tasks) for s in seeds}
    low, high = np.percentile(replicate_means, [2.5, 97.5])
    return {
        "seeds": seeds,
        "per_seed": per_seed,
        "mean": statistics.mean(per_seed.values()),
        "low": float(low),
        "high": float(high),
    }


def _glue_average_difference(a: dict, b: dict, labels: dict, tasks: list[str]) -> float:
    every_row = {t: np.arange(len(labels[t]))[None, :] for t in tasks}
    scores = [
        [resampled_scores(t, np.asarray(r[t]), labels[t], every_row[t])[0] for t in tasks] for r in (a, b)
    ]
    return float(np.mean(scores[0]) - np.mean(scores[1]))


def verdict(comparison: dict, kind: str) -> str:
    """held: the interval lies on the claim's side; not held: on the other side; inconclusive otherwise.
    "beats" needs the interval above 0; "matches" above -NON_INFERIORITY, and is not held below it."""
    margin = NON_INFERIORITY if kind == "matches" else 0.0
    if comparison["low"] > -margin:
        return "held"
    if comparison["high"] < -margin:
        return "not held" if kind == "matches" else "not held (reversed)"
    return f"inconclusive (interval includes {f'-{100 * margin:g} point' if margin else '0'})"


def summarize(records: list[dict], order: list[str] | None = None) -> dict[str, dict]:
    """Per contender (in ``order``, then as found): seeds, mean and std of each task's score and of the
    average, costs and data used."""
    summary = {}
    present = {r["contender"] for r in records}
    for name in [
        n for n in dict.fromkeys([*(order or []), *(r["contender"] for r in records)]) if n in present
    ]:
        runs = [r for r in records if r["contender"] == name]
        tasks = [t for t in COLUMN_NAMES if all(t in r["scores"] for r in runs)]
        spread = lambda v: {"mean": statistics.mean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0}  # noqa: E731
        used = [r["percent_data_used"] for r in runs if r.get("percent_data_used") is not None]
        summary[name] = {
            "seeds": sorted(r["seed"] for r in runs),
            "scores": {t: spread([r["scores"][t] for r in runs]) for t in tasks},
            "glue_average": spread([r["glue_average"] for r in runs]),
            "trainable_params": statistics.mean(r["trainable_params"] for r in runs),
            "percent_data_used": statistics.mean(used) if used else None,
            "examples_seen": statistics.mean(r["examples_seen"] for r in runs),
            # a hard stop loses the time of a resumed run's earlier part, so only whole runs are timed
            "train_minutes": statistics.mean(whole) / 60 if (whole := whole_run_times(runs)) else None,
            "timed_runs": len(whole),
            "cpus": sorted(
                {c for r in runs for c in ([r["cpu"]] if isinstance(r["cpu"], str) else r["cpu"])}
            ),
            "cpu_hours": sum(r["cpu_seconds"] for r in runs) / 3600,
        }
    return summary


def whole_run_times(runs: list[dict]) -> list[float]:
    """train_runtime of the runs trained in one go: a run resumed after a hard stop (``resumed_from_step``)
    never logged the runtime of the part before the stop."""
    return [r["train_runtime"] for r in runs if r.get("resumed_from_step") is None]


def timed_cell(row: dict, seeds: int) -> str:
    """Mean train minutes per run, with how many runs it counts when a resumed run was left out."""
    minutes = f"{row['train_minutes']:.1f}"
    return minutes if row["timed_runs"] == seeds else f"{minutes} ({row['timed_runs']} of {seeds} runs)"


def comparisons(output: Path, records: list[dict], labels: dict[str, np.ndarray]) -> list[dict]:
    """Every COMPARISONS row whose two contenders share at least one seed."""
    predictions: dict[str, dict[int, dict]] = {}
    for r in records:
        path = output / "runs" / f"{r['contender']}-seed{r['seed']}.predictions.json"
        predictions.setdefault(r["contender"], {})[r["seed"]] = read_json(path)
    rows = []
    for a, b, claim, paper, kind in COMPARISONS:
        if a in predictions and b in predictions and set(predictions[a]) & set(predictions[b]):
            result = paired_bootstrap(predictions[a], predictions[b], labels)
            rows.append(
                {
                    "contender": a,
                    "baseline": b,
                    "claim": claim,
                    "paper": paper,
                    "kind": kind,
                    **result,
                    "verdict": verdict(result, kind),
                }
            )
    return rows


def format_contenders(summary: dict[str, dict], floor: dict[str, float] | None) -> list[str]:
    """The contenders' table: mean ± std over seeds, and the linear-probe floor as its first row."""

    def cell(value: dict | None, seeds: int) -> str:
        if value is None:
            return "-"
        return x100(value["mean"]) + (f" ± {x100(value['std'])}" if seeds > 1 else "")

    tasks = [t for t in COLUMN_NAMES if any(t in row["scores"] for row in summary.values())]
    header = [
        "contender",
        "seeds",
        *(COLUMN_NAMES[t] for t in tasks),
        "avg",
        "tasks above floor",
        "trainable params",
        "% data used",
        "examples seen",
        "train min/run",
        "CPU (times compare within one)",
    ]
    rows = []
    if floor:
        average = statistics.mean(floor[t] for t in tasks if t in GLUE_AVERAGE_TASKS and t in floor)
        rows.append(
            [
                "linear-probe floor",
                "-",
                *(x100(floor.get(t)) for t in tasks),
                f"**{x100(average)}**",
                "-",
                "0",
                "-",
                "1,000 per task",
                "-",
                "-",
            ]
        )
    for name, row in summary.items():
        seeds = len(row["seeds"])
        above = [
            t for t in tasks if t != "wnli" and floor and t in floor and row["scores"][t]["mean"] > floor[t]
        ]
        counted = [t for t in tasks if t != "wnli" and floor and t in floor]
        used = "-" if row["percent_data_used"] is None else f"{row['percent_data_used']:.1f}"
        rows.append(
            [
                name,
                seeds,
                *(cell(row["scores"].get(t), seeds) for t in tasks),
                f"**{cell(row['glue_average'], seeds)}**",
                f"{len(above)} of {len(counted)}" if floor else "-",
                f"{row['trainable_params'] / 1e6:.1f} M",
                used,
                f"{row['examples_seen']:,.0f}",
                "-" if row["train_minutes"] is None else timed_cell(row, seeds),
                ", ".join(row["cpus"]),
            ]
        )
    return markdown_table(header, rows)


def format_comparisons(rows: list[dict]) -> list[str]:
    header = ["contender - baseline", "per seed", "mean", "95% interval", "verdict"]
    body = [
        [
            f"{r['contender']} - {r['baseline']}",
            ", ".join(f"{100 * d:+.1f}" for d in r["per_seed"].values()),
            f"{100 * r['mean']:+.2f}",
            f"[{100 * r['low']:+.2f}, {100 * r['high']:+.2f}]",
            r["verdict"],
        ]
        for r in rows
    ]
    return markdown_table(header, body)


def format_claims(rows: list[dict]) -> list[str]:
    header = ["claim", "paper", "here: difference of GLUE averages x100 [95% interval]", "verdict"]
    body = [
        [
            r["claim"],
            r["paper"],
            f"{100 * r['mean']:+.2f} [{100 * r['low']:+.2f}, {100 * r['high']:+.2f}]",
            r["verdict"],
        ]
        for r in rows
    ]
    return markdown_table(header, body)


def check_inputs(settings, probe_path: Path | None) -> None:
    """What the reports need, checked before the first run: the probe's floor at the study's cap (when a
    probe is given) and every dev set's labels."""
    from camtl.bench.probe import load_floor

    if probe_path is not None:
        load_floor(probe_path, settings.max_eval_samples)
    for task in evaluation_tasks(list(settings.tasks)):
        read_split(settings.data_dir, task, "dev", settings.max_eval_samples)


def write_reports(
    output: Path, settings, commands: list[str], probe_path: Path | None, order: list[str] | None = None
) -> None:
    """table.md, claims.md, results.json and task_mix.png, from the records in ``output/runs``."""
    from camtl.bench.probe import load_floor

    records = load_records(output)
    if not records:
        return
    floor = load_floor(probe_path, settings.max_eval_samples) if probe_path and probe_path.is_file() else None
    tasks = sorted({t for r in records for t in r["scores"]})
    labels = {
        t: np.asarray(read_split(settings.data_dir, t, "dev", settings.max_eval_samples).labels)
        for t in tasks
    }
    summary = summarize(records, order)
    compared = comparisons(output, records, labels)
    cpu_hours = sum(r["cpu_seconds"] for r in records) / 3600
    resumed = len(records) - len(whole_run_times(records))
    s = settings
    intro = (
        f"Backbone {backbone_label(s.backbone)}, {s.max_steps} steps x batch {s.batch_size} per multitask run"
        f" ({s.task_sampling} sampling, T = {s.sampling_temperature:g}, except MT-U), single-task models on"
        " as many examples of their task as that sampler draws of it, lr"
        f" {s.learning_rate:g}, max_seq_length {s.max_seq_length}, length-grouped batches, {s.precision},"
        f" {s.threads} thread(s) per run; dev scores x100 on the first"
        f" {s.max_eval_samples} rows of each dev set (whole when smaller), mean ± std over seeds; avg = GLUE"
        " average without WNLI (MNLI-m and -mm counted separately)."
    )
    lines = [
        "# glue-mini: CA-MTL's claims on the bundled 6-layer encoder", "", intro, "",
        *format_contenders(summary, floor), "",
        "Paired differences of GLUE averages (x100), per seed and pooled, with a bootstrap over seeds and"
        f" dev rows ({BOOTSTRAP} replicates):", "", *format_comparisons(compared), "",
        f"CPU time of the {len(records)} records: {cpu_hours:.1f} h (user + system of the run.py"
        " processes; evaluation not included"
        + (f"; the {resumed} resumed after a hard stop count their last part only" if resumed else "")
        + ").", "", "Made by:", "", *(f"    {c}" for c in commands),
    ]  # fmt: skip
    (output / "table.md").write_text("\n".join(lines) + "\n")
    (output / "claims.md").write_text("\n".join(format_claims(compared)) + "\n")
    write_json(
        output / "results.json",
        {
            "commands": commands,
            "contenders": summary,
            "comparisons": compared,
            "floor": floor,
            "cpu_hours": cpu_hours,
        },
    )
    figures.plot_task_mix(records, output / "task_mix.png", settings.batch_size)
    figures.plot_learning_curves(records, floor, output / "learning_curves.png")
    figures.plot_claims(compared, output / "claims.png")
