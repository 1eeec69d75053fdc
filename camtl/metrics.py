"""GLUE dev metrics, the GLUE average, and the results table.

All scores are fractions (accuracy 0.853, MCC 0.521); the table shows them x100 as papers do.
Undefined correlations are reported as 0 instead of NaN: a constant prediction (or constant gold
labels) carries no information about the other side, so MCC, Pearson and Spearman are 0, which
keeps eval_results.json valid JSON and the GLUE average finite.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from camtl.errors import UsageError
from camtl.tasks import PRIMARY_METRIC, TASKS, canonical_task_name


def _is_constant(values: np.ndarray) -> bool:
    return bool(np.all(values == values[0]))


def _correlation(correlate: Callable, predictions: np.ndarray, labels: np.ndarray) -> float:
    if _is_constant(predictions) or _is_constant(labels):
        return 0.0
    with warnings.catch_warnings():
        # Nearly constant inputs still give a usable coefficient; the warning would only be noise in logs.
        warnings.simplefilter("ignore", stats.NearConstantInputWarning)
        return float(correlate(predictions, labels).statistic)


def _matthews(predictions: np.ndarray, labels: np.ndarray) -> float:
    # Undefined (zero denominator) exactly when one side is constant; sklearn would warn before returning 0.
    if _is_constant(predictions) or _is_constant(labels):
        return 0.0
    return float(matthews_corrcoef(labels, predictions))


def _class_indices(name: str, values: np.ndarray, num_labels: int) -> np.ndarray:
    indices = values.astype(np.int64)
    if not np.array_equal(indices, values) or indices.min() < 0 or indices.max() >= num_labels:
        raise ValueError(
            f"{name} must be class indices in [0, {num_labels}), got values {np.unique(values)[:5]}"
        )
    return indices


def compute_metrics(task: str, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The task's GLUE metrics plus ``score``, its primary metric, as plain floats.

    ``predictions`` are class indices for classification tasks and float scores for STS-B.
    """
    task = canonical_task_name(task)
    spec = TASKS[task]
    if task not in PRIMARY_METRIC:
        raise UsageError(
            f"task '{task}' has no gold labels to score: predict it for a GLUE submission instead"
        )
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if predictions.ndim != 1 or predictions.shape != labels.shape or predictions.size == 0:
        raise ValueError(
            f"{task}: predictions and labels must be non-empty 1-D arrays of one length,"
            f" got shapes {predictions.shape} and {labels.shape}"
        )

    metrics: dict[str, float] = {}
    if spec.is_regression:
        predictions, labels = predictions.astype(np.float64), labels.astype(np.float64)
        if not (np.isfinite(predictions).all() and np.isfinite(labels).all()):
            raise ValueError(f"{task}: predictions or labels contain NaN or infinity")
        metrics["pearson"] = _correlation(stats.pearsonr, predictions, labels)
        metrics["spearman"] = _correlation(stats.spearmanr, predictions, labels)
        metrics["corr"] = (metrics["pearson"] + metrics["spearman"]) / 2
    else:
        predictions = _class_indices(f"{task} predictions", predictions, spec.num_labels)
        labels = _class_indices(f"{task} labels", labels, spec.num_labels)
        metrics["accuracy"] = float(accuracy_score(labels, predictions))
        if "f1" in spec.metrics:
            metrics["f1"] = float(f1_score(labels, predictions, pos_label=1, zero_division=0))
            metrics["acc_and_f1"] = (metrics["accuracy"] + metrics["f1"]) / 2
        if "mcc" in spec.metrics:
            metrics["mcc"] = _matthews(predictions, labels)

    ordered = {name: metrics[name] for name in spec.metrics}
    ordered["score"] = metrics[PRIMARY_METRIC[task]]
    return ordered


def _task_results(results: dict) -> dict[str, dict]:
    """The entries of ``results`` that are scored GLUE tasks, in registry order."""
    return {task: results[task] for task in PRIMARY_METRIC if isinstance(results.get(task), dict)}


def glue_average(results: dict[str, dict], include_wnli: bool = False) -> float:
    """Mean primary score over the tasks present; MNLI-m and MNLI-mm are two entries, as in the papers."""
    scores = [
        metrics["score"] for task, metrics in _task_results(results).items() if include_wnli or task != "wnli"
    ]
    if not scores:
        raise ValueError("no scored GLUE task in the results: nothing to average")
    return float(np.mean(scores))


def summarize(results: dict[str, dict]) -> dict:
    """The eval_results.json object: each task's metrics, then the GLUE averages."""
    summary: dict = dict(_task_results(results))
    # A WNLI-only evaluation (a single-task WNLI model) still needs a number to select checkpoints by.
    summary["glue_average"] = glue_average(summary, include_wnli=set(summary) == {"wnli"})
    if "wnli" in summary:
        summary["glue_average_with_wnli"] = glue_average(summary, include_wnli=True)
    return summary


def format_results_table(results: dict) -> str:
    """A fixed-width table of ``results`` (per-task metrics, optionally with averages), scores x100."""
    rows = [("task", "metric", "score", "other metrics")]
    for task, metrics in _task_results(results).items():
        primary = PRIMARY_METRIC[task]
        others = "  ".join(
            f"{name} {100 * value:.2f}" for name, value in metrics.items() if name not in ("score", primary)
        )
        rows.append((task, primary, f"{100 * metrics['score']:.2f}", others))

    averages = []
    if any(task != "wnli" for task in _task_results(results)):
        averages.append(("GLUE average without WNLI", glue_average(results)))
    if "wnli" in _task_results(results):
        averages.append(("GLUE average with WNLI", glue_average(results, include_wnli=True)))

    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    # Average rows span the task and metric columns; widen the metric column if their labels need it.
    label_width = max([widths[0] + 2 + widths[1]] + [len(label) for label, _ in averages])
    widths[1] = label_width - widths[0] - 2
    lines = [
        f"{task:<{widths[0]}}  {metric:<{widths[1]}}  {score:>{widths[2]}}  {others}".rstrip()
        for task, metric, score, others in rows
    ]
    lines += [f"{label:<{label_width}}  {100 * value:>{widths[2]}.2f}" for label, value in averages]
    return "\n".join(lines)
