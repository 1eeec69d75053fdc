"""Dev-set evaluation and test-set prediction for every task of every type, with one model.

Examples are sorted by length before batching (little padding) and run under ``torch.inference_mode``;
outputs are put back in file order. A task predicted by another task's head (mnli-mm, snli by MNLI's,
scitail by RTE's) reads that head, its classes mapped by name.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import torch

from camtl.data.collation import MultiTaskCollator, model_inputs
from camtl.data.features import TaskDataset, TaskFeatures
from camtl.tasks import TASKS
from camtl.training.metrics import compute_metrics, summarize

Autocast = Callable[[], contextlib.AbstractContextManager]

logger = logging.getLogger(__name__)


def _batches(model, features: TaskFeatures, collator: MultiTaskCollator, batch_size: int, autocast: Autocast):
    """(example indices, batch on the device, model output) in length-sorted batches."""
    task = TASKS[features.task]
    dataset = TaskDataset(features, task_id=model.task_index(task.head))
    order = torch.argsort(features.lengths, descending=True, stable=True)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast():
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                batch = collator([dataset[int(i)] for i in rows])
                batch = {key: value.to(device) for key, value in batch.items() if key != "example_index"}
                yield rows, batch, model(**model_inputs(batch, labels=False))
    finally:
        model.train(was_training)


def predict_features(
    model: torch.nn.Module,
    features: TaskFeatures,
    collator: MultiTaskCollator,
    batch_size: int,
    autocast: Autocast = contextlib.nullcontext,
):
    """Predictions in file order: class or choice indices (np.int64), regression scores (np.float32), each
    example's tags word by word (token classification), or masked-LM totals (a dict)."""
    task = TASKS[features.task]
    if task.type == "masked_lm":
        return _masked_lm_totals(model, features, collator, batch_size, autocast)
    if task.type == "token_classification":
        return _word_tags(model, features, collator, batch_size, autocast)
    predictions = torch.empty(len(features), dtype=torch.float32 if task.is_regression else torch.long)
    for rows, _, output in _batches(model, features, collator, batch_size, autocast):
        logits = output.logits.float()
        predictions[rows] = (logits[:, 0] if task.is_regression else logits.argmax(-1)).cpu()
    if task.head != task.name and not task.is_regression:  # the head's classes, mapped by name
        head_labels = TASKS[task.head].labels
        mapping = torch.tensor([task.labels.index(n) if n in task.labels else -1 for n in head_labels])
        predictions = mapping[predictions]
    return predictions.numpy()


def _word_tags(model, features, collator, batch_size, autocast) -> list[list[int]]:
    """The predicted tag of each word (its first sub-token's). Words that truncation cut off are given the
    outside tag ("O", or the task's first label), so that every sentence has one tag per word."""
    tags: list[list[int]] = [[] for _ in range(len(features))]
    for rows, batch, output in _batches(model, features, collator, batch_size, autocast):
        predicted = output.token_logits.argmax(-1).cpu()  # (S, L)
        starts = batch["word_starts"].bool().cpu()
        for row, index in enumerate(rows.tolist()):
            tags[index] = predicted[row][starts[row]].tolist()
    counts = features.word_counts  # kept by tokenization since CACHE_FORMAT_VERSION 4
    labels = TASKS[features.task].labels
    outside = labels.index("O") if "O" in labels else 0
    cut = sum(len(predicted) < count for predicted, count in zip(tags, counts, strict=True))
    if cut:
        _warn_once(
            (features.task, features.split),
            f"{features.task} {features.split}: {cut} of {len(tags)} sentences are longer than"
            f" --max_seq_length: their words past the cut are predicted as {labels[outside]!r}"
            " (a larger --max_seq_length tags them)",
        )
    return [
        predicted + [outside] * (count - len(predicted))
        for predicted, count in zip(tags, counts, strict=True)
    ]


_WARNED: set[tuple[str, str]] = set()


def _warn_once(key: tuple[str, str], message: str) -> None:
    """A warning per task and split, not one per evaluation of a training run."""
    if key not in _WARNED:
        _WARNED.add(key)
        logger.warning(message)


def _masked_lm_totals(model, features, collator, batch_size, autocast) -> dict[str, float]:
    totals = {"correct": 0, "masked": 0, "loss_sum": 0.0}
    for _, batch, output in _batches(model, features, collator, batch_size, autocast):
        logits, labels = output.mlm_logits.float(), batch["mlm_labels"]
        totals["correct"] += int((logits.argmax(-1) == labels).sum())
        totals["masked"] += len(labels)
        totals["loss_sum"] += float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
    return totals


def gold_labels(features: TaskFeatures):
    """What ``compute_metrics`` compares predictions with, per task type."""
    kind = TASKS[features.task].type
    if kind == "token_classification":
        return features.word_tags
    if kind == "masked_lm":
        return None
    return features.labels.numpy()


def evaluate_tasks(
    model: torch.nn.Module,
    dev_sets: dict[str, TaskFeatures],
    collator: MultiTaskCollator,
    batch_size: int,
    autocast: Autocast = contextlib.nullcontext,
) -> dict:
    """Metrics per task and the averages (the eval_results.json object)."""
    results = {}
    for task, features in dev_sets.items():
        predictions = predict_features(model, features, collator, batch_size, autocast)
        results[task] = compute_metrics(task, predictions, gold_labels(features))
    return summarize(results)


def predict_tasks(
    model: torch.nn.Module,
    test_sets: dict[str, TaskFeatures],
    collator: MultiTaskCollator,
    batch_size: int,
    autocast: Autocast = contextlib.nullcontext,
) -> dict[str, tuple[list[str], object]]:
    """Test-set predictions per task with their IDs, for ``write_submission`` and the prediction files."""
    return {
        task: (features.ids, predict_features(model, features, collator, batch_size, autocast))
        for task, features in test_sets.items()
        if TASKS[task].type != "masked_lm"  # nothing to submit: its test text is scored as dev
    }
