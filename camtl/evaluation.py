"""Dev-set evaluation and test-set prediction for every task, with one model.

Examples are sorted by length before batching (little padding) and run under
``torch.inference_mode``; outputs are put back in file order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch

from camtl.features import MultiTaskCollator, TaskDataset, TaskFeatures
from camtl.metrics import compute_metrics, summarize
from camtl.tasks import TASKS


def predict_features(
    model: torch.nn.Module,
    features: TaskFeatures,
    collator: MultiTaskCollator,
    batch_size: int,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> np.ndarray:
    """Predictions of the task's head in file order: class indices, or scores for regression."""
    task = TASKS[features.task]
    dataset = TaskDataset(features, task_id=model.task_index(task.head))
    order = torch.argsort(features.lengths, descending=True, stable=True)
    device = next(model.parameters()).device
    outputs = []
    was_training = model.training
    model.eval()
    with torch.inference_mode(), autocast():
        for start in range(0, len(order), batch_size):
            batch = collator([dataset[int(i)] for i in order[start : start + batch_size]])
            batch = {k: v.to(device) for k, v in batch.items() if k not in ("labels", "example_index")}
            logits = model(**batch).logits.float()
            outputs.append(logits[:, 0] if task.is_regression else logits.argmax(-1))
    model.train(was_training)
    predictions = torch.empty(len(order), dtype=torch.float32 if task.is_regression else torch.long)
    if len(order):
        predictions[order] = torch.cat(outputs).cpu()
    return predictions.numpy()


def evaluate_tasks(
    model: torch.nn.Module,
    dev_sets: dict[str, TaskFeatures],
    collator: MultiTaskCollator,
    batch_size: int,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> dict:
    """Metrics per task and the GLUE averages (the eval_results.json object)."""
    results = {}
    for task, features in dev_sets.items():
        predictions = predict_features(model, features, collator, batch_size, autocast)
        results[task] = compute_metrics(task, predictions, features.labels.numpy())
    return summarize(results)


def predict_tasks(
    model: torch.nn.Module,
    test_sets: dict[str, TaskFeatures],
    collator: MultiTaskCollator,
    batch_size: int,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> dict[str, tuple[list[str], np.ndarray]]:
    """Test-set predictions per task with their submission IDs, for ``write_submission``."""
    return {
        task: (features.ids, predict_features(model, features, collator, batch_size, autocast))
        for task, features in test_sets.items()
    }
