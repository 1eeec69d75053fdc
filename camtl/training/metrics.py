"""GLUE dev metrics, the GLUE average, and the results table.

All scores are fractions (accuracy 0.853, MCC 0.521); the table shows them x100 as papers do.
A correlation over a constant side (constant predictions or gold scores) is undefined: Pearson,
Spearman and their mean are None (null in eval_results.json, "-" in the table), not a made-up 0, and
the averages leave such a task out with a warning. So is an F1 with nothing to find and nothing found
(no positive gold label or prediction; for entity F1, no entity in the gold or the predicted tags); a
macro F1 leaves out, with a warning, the classes on neither side. MCC keeps the convention of GLUE's
official scorer and sklearn, 0 there (a constant classifier is the chance-level baseline that MCC's 0
stands for), with a warning naming the task, so that a collapsed classifier's 0 is not read as a
measured one.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

import numpy as np
from scipy import stats
from seqeval import metrics as seqeval_metrics
from seqeval.metrics.sequence_labeling import get_entities
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from camtl.errors import UsageError
from camtl.tasks import SUMMARY_KEYS, TASKS, canonical_task_name

logger = logging.getLogger(__name__)


def _is_constant(values: np.ndarray) -> bool:
    return bool(np.all(values == values[0]))


def _correlation(correlate: Callable, predictions: np.ndarray, labels: np.ndarray) -> float | None:
    if _is_constant(predictions) or _is_constant(labels):
        return None  # a zero denominator: no number would be honest
    with warnings.catch_warnings():
        # Nearly constant inputs still give a usable coefficient; the warning would only be noise in logs.
        warnings.simplefilter("ignore", stats.NearConstantInputWarning)
        return float(correlate(predictions, labels).statistic)


def _matthews(task: str, predictions: np.ndarray, labels: np.ndarray) -> float:
    # Undefined (zero denominator) exactly when one side is constant; sklearn would warn before returning 0.
    for side, values in (("prediction", predictions), ("gold label", labels)):
        if _is_constant(values):
            logger.warning(
                "%s: every %s is class %d, so MCC is 0 by GLUE's convention (undefined otherwise)",
                task, side, values[0],
            )  # fmt: skip
            return 0.0
    return float(matthews_corrcoef(labels, predictions))


def _positive_f1(predictions: np.ndarray, labels: np.ndarray) -> float | None:
    """F1 of class 1, 2TP / (2TP + FP + FN): undefined (0/0) when neither side holds class 1 at all."""
    if not (np.any(labels == 1) or np.any(predictions == 1)):
        return None
    return float(f1_score(labels, predictions, pos_label=1, zero_division=0))


def _macro_f1(spec, predictions: np.ndarray, labels: np.ndarray) -> float:
    """The mean F1 over the classes; a class on neither side (a small dev set) has an undefined F1 and is
    left out of the mean, with a warning, rather than counted as 0."""
    classes = list(range(spec.num_labels))
    absent = [spec.labels[c] for c in classes if not (np.any(labels == c) or np.any(predictions == c))]
    if absent:
        logger.warning(
            "%s: no gold label and no prediction is %s, so macro_f1 averages the other classes",
            spec.name, " or ".join(map(repr, absent)),
        )  # fmt: skip
    return float(f1_score(labels, predictions, labels=classes, average="macro", zero_division=np.nan))


def _class_indices(name: str, values: np.ndarray, num_labels: int, allow_unknown: bool = False) -> np.ndarray:
    indices = values.astype(np.int64)
    lowest = -1 if allow_unknown else 0
    if not np.array_equal(indices, values) or indices.min() < lowest or indices.max() >= num_labels:
        raise ValueError(
            f"{name} must be class indices in [0, {num_labels}), got values {np.unique(values)[:5]}"
        )
    return indices


def compute_metrics(task: str, predictions, labels) -> dict[str, float | None]:
    """The task's metrics plus ``score``, its primary metric, as plain floats (None: undefined).

    ``predictions``: class or choice indices (-1: a class the predicting head does not have, always
    wrong), regression scores, each example's tag ids word by word (token classification, ``labels`` the
    gold tags), or a masked LM's totals (``labels`` None).
    """
    task = canonical_task_name(task)
    spec = TASKS[task]
    if not spec.primary_metric:
        raise UsageError(f"task '{task}' has no gold labels to score: predict it for a submission instead")
    if spec.type == "masked_lm":
        metrics = _masked_lm_metrics(predictions)
    elif spec.type == "token_classification":
        metrics = _entity_metrics(spec, predictions, labels)
    else:
        metrics = _sequence_metrics(spec, np.asarray(predictions), np.asarray(labels))
    ordered = {name: metrics[name] for name in spec.metrics}
    ordered["score"] = metrics[spec.primary_metric]
    return ordered


def _sequence_metrics(spec, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float | None]:
    if predictions.ndim != 1 or predictions.shape != labels.shape or predictions.size == 0:
        raise ValueError(
            f"{spec.name}: predictions and labels must be non-empty 1-D arrays of one length,"
            f" got shapes {predictions.shape} and {labels.shape}"
        )
    metrics: dict[str, float | None] = {}
    if spec.is_regression:
        predictions, labels = predictions.astype(np.float64), labels.astype(np.float64)
        if not (np.isfinite(predictions).all() and np.isfinite(labels).all()):
            raise ValueError(f"{spec.name}: predictions or labels contain NaN or infinity")
        metrics["pearson"] = _correlation(stats.pearsonr, predictions, labels)
        metrics["spearman"] = _correlation(stats.spearmanr, predictions, labels)
        both = (metrics["pearson"], metrics["spearman"])
        metrics["corr"] = None if None in both else (both[0] + both[1]) / 2
        return metrics
    predictions = _class_indices(f"{spec.name} predictions", predictions, spec.num_labels, allow_unknown=True)
    labels = _class_indices(f"{spec.name} labels", labels, spec.num_labels)
    metrics["accuracy"] = float(accuracy_score(labels, predictions))
    if "f1" in spec.metrics:
        metrics["f1"] = _positive_f1(predictions, labels)
        metrics["acc_and_f1"] = None if metrics["f1"] is None else (metrics["accuracy"] + metrics["f1"]) / 2
    if "macro_f1" in spec.metrics:
        metrics["macro_f1"] = _macro_f1(spec, predictions, labels)
    if "mcc" in spec.metrics:
        metrics["mcc"] = _matthews(spec.name, predictions, labels)
    return metrics


def _entity_metrics(spec, predictions: list[list[int]], labels: list[list[int]]) -> dict[str, float | None]:
    """Entity-level precision, recall and F1 of BIO tags (seqeval's CoNLL evaluation); all undefined
    (None) when neither the gold tags nor the predicted ones hold an entity."""
    if len(predictions) != len(labels) or not labels:
        raise ValueError(
            f"{spec.name}: one tag list per sentence is needed, got {len(predictions)} for {len(labels)}"
        )
    names = spec.labels
    predicted = [[names[t] for t in sentence] for sentence in predictions]
    gold = [[names[t] for t in sentence] for sentence in labels]
    if not (get_entities(gold) or get_entities(predicted)):  # nothing to find, nothing found: 0/0
        return dict.fromkeys(("entity_precision", "entity_recall", "entity_f1"))
    return {
        "entity_precision": float(seqeval_metrics.precision_score(gold, predicted, zero_division=0)),
        "entity_recall": float(seqeval_metrics.recall_score(gold, predicted, zero_division=0)),
        "entity_f1": float(seqeval_metrics.f1_score(gold, predicted, zero_division=0)),
    }


def _masked_lm_metrics(totals: dict) -> dict[str, float]:
    masked = max(totals["masked"], 1)
    return {"masked_accuracy": totals["correct"] / masked, "masked_loss": totals["loss_sum"] / masked}


def _task_results(results: dict) -> dict[str, dict]:
    """The entries of ``results`` that are scored tasks: registered ones in registry order, then any others
    (tasks of a task file that this process has not registered) in their own order."""
    scored = {task: metrics for task, metrics in results.items() if isinstance(metrics, dict)}
    return {
        task: scored[task] for task in [*(t for t in TASKS if t in scored), *scored.keys() - TASKS.keys()]
    }


def _is_glue(task: str) -> bool:
    return task in TASKS and TASKS[task].glue


def _primary_metric(task: str, metrics: dict[str, float]) -> str:
    """The registered task's primary metric; for another task, the metric that its score repeats."""
    if task in TASKS:
        return TASKS[task].primary_metric
    return next(
        (name for name, value in metrics.items() if name != "score" and value == metrics["score"]), "score"
    )


def _format_metric(name: str, value: float | None) -> str:
    if value is None:
        return f"{name} -"
    return f"{name} {value:.3f}" if name.endswith("loss") else f"{name} {100 * value:.2f}"  # losses unscaled


def _undefined(results: dict[str, dict]) -> list[str]:
    """The tasks whose score is undefined (a correlation over constant values, an F1 over no positive): no
    average counts them."""
    return [task for task, metrics in _task_results(results).items() if metrics["score"] is None]


def glue_average(results: dict[str, dict], include_wnli: bool = False) -> float | None:
    """Mean primary score over the GLUE tasks present; MNLI-m and MNLI-mm count as two, as in the papers.
    Tasks with an undefined score are left out; None when every one is undefined."""
    scores = [
        metrics["score"]
        for task, metrics in _task_results(results).items()
        if _is_glue(task) and (include_wnli or task != "wnli")
    ]
    if not scores:
        raise ValueError("no scored GLUE task in the results: nothing to average")
    defined = [score for score in scores if score is not None]
    return float(np.mean(defined)) if defined else None


def summarize(results: dict[str, dict]) -> dict:
    """The eval_results.json object: each task's metrics, then the averages.

    ``glue_average`` over the GLUE tasks (without WNLI; a WNLI-only evaluation still gets one, to select
    checkpoints by), and with other tasks ``average``, the mean score over every task evaluated."""
    summary: dict = dict(_task_results(results))
    glue = [task for task in summary if _is_glue(task)]
    if glue:
        summary["glue_average"] = glue_average(summary, include_wnli=set(glue) == {"wnli"})
        if "wnli" in summary:
            summary["glue_average_with_wnli"] = glue_average(summary, include_wnli=True)
    if len(glue) < len(summary) - ("glue_average" in summary) - ("glue_average_with_wnli" in summary):
        defined = [m["score"] for m in _task_results(summary).values() if m["score"] is not None]
        summary["average"] = float(np.mean(defined)) if defined else None
    _warn_undefined(summary)
    return summary


def _warn_undefined(results: dict[str, dict]) -> None:
    """Name the tasks whose score is undefined (left out of the averages), and the other metrics that
    are, so that no null in eval_results.json goes unexplained."""
    reason = (
        "a correlation over constant predictions or gold scores, or an F1 with no positive on either side"
    )
    undefined = _undefined(results)
    if undefined:
        logger.warning(
            "%s: the score is undefined (%s): reported as null and left out of the averages",
            ", ".join(undefined),
            reason,
        )
    others = [
        f"{task} {name}"
        for task, metrics in _task_results(results).items()
        if task not in undefined
        for name, value in metrics.items()
        if value is None
    ]
    if others:
        logger.warning("%s undefined (%s): reported as null", ", ".join(others), reason)


AVERAGES = SUMMARY_KEYS  # the summary keys of eval_results.json, which no task may be named


def selection_score(results: dict) -> float:
    """The one number checkpoints are chosen by: the average over all tasks, or the GLUE average; -inf
    when it is undefined (every task's score is), so that any defined evaluation ranks above it."""
    score = results["average"] if "average" in results else results["glue_average"]
    return float("-inf") if score is None else score


def format_results_table(results: dict) -> str:
    """A fixed-width table of ``results`` (per-task metrics, optionally with averages), scores x100."""
    rows = [("task", "metric", "score", "other metrics")]
    for task, metrics in _task_results(results).items():
        primary = _primary_metric(task, metrics)
        others = "  ".join(
            _format_metric(name, value) for name, value in metrics.items() if name not in ("score", primary)
        )
        score = "-" if metrics["score"] is None else f"{100 * metrics['score']:.2f}"
        rows.append((task, primary, score, others))

    averages = []
    glue = [task for task in _task_results(results) if _is_glue(task)]
    if any(task != "wnli" for task in glue):
        averages.append(("GLUE average without WNLI", glue_average(results)))
    if "wnli" in glue:
        averages.append(("GLUE average with WNLI", glue_average(results, include_wnli=True)))
    if "average" in results:
        averages.append(("average over all tasks", results["average"]))

    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    # Average rows span the task and metric columns; widen the metric column if their labels need it.
    label_width = max([widths[0] + 2 + widths[1]] + [len(label) for label, _ in averages])
    widths[1] = label_width - widths[0] - 2
    lines = [
        f"{task:<{widths[0]}}  {metric:<{widths[1]}}  {score:>{widths[2]}}  {others}".rstrip()
        for task, metric, score, others in rows
    ]
    lines += [
        f"{label:<{label_width}}  {'-' if value is None else f'{100 * value:.2f}':>{widths[2]}}"
        for label, value in averages
    ]
    return "\n".join(lines)
