"""What a run's checkpoints say about one task's head: is it learning, or predicting one class?

For each ``checkpoint-N`` of a run: the dev predictions' class counts and metrics, the head's bias and
the spread of its logit margins over the dev examples (a head that ignores its input has margins that
barely vary), and each task's mean loss on a fixed sample of its training rows (eval mode, no dropout).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from camtl.data.collation import MultiTaskCollator, model_inputs
from camtl.data.features import TaskDataset, TaskFeatures, load_features
from camtl.errors import UsageError
from camtl.model import CaMtlModel, load_model, load_tokenizer
from camtl.training.metrics import compute_metrics

LOSS_SAMPLE = 256  # training rows per task whose loss is traced
BATCH = 64


def checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoint-N folders by step."""
    found = [p for p in run_dir.glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


@torch.inference_mode()
def outputs_of(model: CaMtlModel, features: TaskFeatures, task: str, rows: torch.Tensor, name: str):
    """The model output ``name`` (logits or example_losses) of ``task``'s rows, eval mode, in row order."""
    dataset = TaskDataset(features, model.task_index(task))
    collator = MultiTaskCollator(model.config.backbone.get("pad_token_id") or 0)
    model.eval()
    out = []
    for start in range(0, len(rows), BATCH):
        batch = collator([dataset[int(i)] for i in rows[start : start + BATCH]])
        out.append(getattr(model(**model_inputs(batch)), name).float())
    return torch.cat(out)


def logits_of(model: CaMtlModel, features: TaskFeatures, task: str, rows: torch.Tensor) -> torch.Tensor:
    """(len(rows), C) logits of ``task``'s head on the given rows."""
    return outputs_of(model, features, task, rows, "logits")


def head_bias(model: CaMtlModel, task: str) -> list[float]:
    """The bias of ``task``'s output columns."""
    t = model.task_index(task)
    columns = model.heads.columns[t][model.heads.valid_classes[t]]
    return model.heads.classifier.bias[columns].tolist()


def task_loss(model: CaMtlModel, features: TaskFeatures, task: str, rows: torch.Tensor) -> float:
    """``task``'s mean loss over the given rows (the model's own per-example losses)."""
    return float(outputs_of(model, features, task, rows, "example_losses").mean())


def dev_summary(model: CaMtlModel, features: TaskFeatures, task: str) -> dict:
    """Class counts, metrics and the logit margin's mean and spread of one classification task's dev set."""
    logits = logits_of(model, features, task, torch.arange(len(features)))
    predictions = logits.argmax(-1).numpy()
    labels = features.labels.numpy().astype(np.int64)
    margin = (logits[:, 1] - logits[:, 0]) if logits.shape[1] == 2 else logits.max(-1).values
    return {
        "predicted_counts": np.bincount(predictions, minlength=logits.shape[1]).tolist(),
        "label_counts": np.bincount(labels, minlength=logits.shape[1]).tolist(),
        "metrics": compute_metrics(task, predictions, labels),
        "margin_mean": float(margin.mean()),
        "margin_std": float(margin.std()),
    }


def trace_run(
    run_dir: Path, task: str, data_dir: str, max_seq_length: int, cache_dir: Path | None = None
) -> list[dict]:
    """One entry per checkpoint: step, the traced task's dev summary and bias, every task's training loss."""
    saved = checkpoints(run_dir)
    if not saved:
        raise UsageError(f"{run_dir} has no checkpoint-N folder to trace: train with --save_steps")
    tokenizer = load_tokenizer(str(saved[0]))  # every checkpoint holds the run's tokenizer
    generator = torch.Generator().manual_seed(0)
    entries, train_sets, rows = [], {}, {}
    dev = load_features(data_dir, task, "dev", tokenizer, max_seq_length, cache_dir)
    for checkpoint in saved:
        model = load_model(str(checkpoint), None)
        for name in model.config.tasks:
            if name not in train_sets:
                train_sets[name] = load_features(
                    data_dir, name, "train", tokenizer, max_seq_length, cache_dir
                )
                size = len(train_sets[name])
                rows[name] = torch.randperm(size, generator=generator)[: min(LOSS_SAMPLE, size)]
        entries.append(
            {
                "step": int(checkpoint.name.split("-")[1]),
                "task": task,
                "bias": head_bias(model, task),
                "dev": dev_summary(model, dev, task),
                "train_loss": {n: task_loss(model, train_sets[n], n, rows[n]) for n in model.config.tasks},
            }
        )
    return entries
