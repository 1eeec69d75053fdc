"""The study's figures: the claims with their intervals, dev score against examples seen for the core
contenders, and the task mix of CA-MTL's sampler and the MT-Uncertainty contenders. PNG files beside the
table."""

from __future__ import annotations

import statistics
from pathlib import Path

from matplotlib.figure import Figure

VERDICT_COLORS = {"held": "tab:green", "not held": "tab:red", "not held (reversed)": "tab:red"}  # else grey


# The contenders whose task mix is drawn: CA-MTL's temperature sampler, against which MT-U's choices read.
TASK_MIX_CONTENDERS = ("ca-mtl", "ca-mtl-mtu", "mtu-eval-scoring")


def plot_task_mix(records: list[dict], path: Path, batch_size: int) -> None:
    """Share of each task among the examples trained on per logging interval (seed mean), for CA-MTL's
    temperature sampler and the MT-Uncertainty contenders, one panel each."""
    panels = {}
    mixed = [r for r in records if r["contender"] in TASK_MIX_CONTENDERS and r.get("task_mix")]
    for name in sorted({r["contender"] for r in mixed}, key=TASK_MIX_CONTENDERS.index):
        runs = [r["task_mix"] for r in mixed if r["contender"] == name]
        steps = [e["step"] for e in runs[0]]
        tasks = list(runs[0][0]["drawn"])
        shares = {t: [] for t in tasks}
        for i in range(len(steps)):
            drawn = [
                {t: mix[i]["drawn"][t] - (mix[i - 1]["drawn"][t] if i else 0) for t in tasks} for mix in runs
            ]
            for t in tasks:
                shares[t].append(statistics.mean(d[t] / max(1, sum(d.values())) for d in drawn))
        panels[name] = (steps, shares)
    if not panels:
        return
    figure = Figure(figsize=(6 * len(panels), 3.4))
    axes = figure.subplots(1, len(panels), squeeze=False).ravel()
    for ax, (name, (steps, shares)) in zip(axes, panels.items(), strict=True):
        ax.stackplot([s * batch_size for s in steps], *shares.values(), labels=list(shares))
        ax.set(title=name, xlabel="training examples seen", ylabel="share of examples", ylim=(0, 1))
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def plot_learning_curves(records: list[dict], floor: dict[str, float] | None, path: Path) -> None:
    """GLUE average (x100, mean over seeds) against training examples seen, one line per contender that
    evaluated during training; the probe floor's average as a dashed line."""
    curves = {}
    for name in dict.fromkeys(r["contender"] for r in records if r.get("learning_curve")):
        runs = [r["learning_curve"] for r in records if r["contender"] == name]
        points = min(len(curve) for curve in runs)
        seen = [runs[0][i]["examples_seen"] for i in range(points)]
        curves[name] = (
            seen,
            [100 * statistics.mean(c[i]["glue_average"] for c in runs) for i in range(points)],
        )
    if not curves:
        return
    figure = Figure(figsize=(6.4, 4))
    ax = figure.subplots()
    for name, (seen, average) in curves.items():
        ax.plot(seen, average, marker="o", label=name)
    if floor:
        tasks = [t for t in floor if t != "wnli"]
        ax.axhline(100 * statistics.mean(floor[t] for t in tasks), ls="--", c="grey", label="probe floor")
    ax.set(
        xlabel="training examples seen", ylabel="GLUE average (dev, x100)", title="Dev score while training"
    )
    ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def plot_claims(comparisons: list[dict], path: Path) -> None:
    """Each comparison's difference of GLUE averages (x100) with its 95% interval, coloured by verdict."""
    if not comparisons:
        return
    figure = Figure(figsize=(7.5, 0.45 * len(comparisons) + 1.2))
    ax = figure.subplots()
    for row, c in enumerate(reversed(comparisons)):
        mean, low, high = (100 * c[key] for key in ("mean", "low", "high"))
        color = VERDICT_COLORS.get(c["verdict"], "tab:grey")
        ax.errorbar(mean, row, xerr=[[mean - low], [high - mean]], fmt="o", color=color, capsize=3)
    ax.set_yticks(
        range(len(comparisons)), [f"{c['contender']} - {c['baseline']}" for c in reversed(comparisons)]
    )
    ax.axvline(0, c="black", lw=0.8)
    ax.set(xlabel="difference of GLUE averages (x100), 95% interval", title="The paper's claims, here")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
