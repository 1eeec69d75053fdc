"""Pooling, the task heads, their losses and entropies, and the loss of a mixed-task batch.

All heads are one linear layer whose columns are gathered per example, so a mixed-task batch costs
one matmul. Shapes: B batch, L length, d hidden size, C the largest label count, T tasks.
"""

from __future__ import annotations

import torch
from torch import nn

from camtl.model.configuration import CaMtlConfig
from camtl.tasks import TASKS

HEAD_DROPOUT = 0.1  # the authors' decoder: Dropout(0.1) before each task's linear layer
ENTROPY_EPS = 1e-5  # the authors normalise an entropy by log(num_labels) + 1e-5


def pool(sequence: torch.Tensor, attention_mask: torch.Tensor | None, mode: str, pooler: nn.Module | None):
    """(B, d) from the encoder output (B, L, d).

    cls: the backbone's [CLS] pooler (BERT, RoBERTa: tanh(W h_[CLS] + b)), or the [CLS] state itself for a
    backbone without one (ELECTRA, DeBERTa, ModernBERT). mean: the mean over the real (unpadded) tokens.
    """
    if mode == "mean":
        if attention_mask is None:
            return sequence.mean(1)
        weights = attention_mask.to(sequence.dtype).unsqueeze(-1)  # (B, L, 1)
        return (sequence * weights).sum(1) / weights.sum(1).clamp(min=1)
    return pooler(sequence) if pooler is not None else sequence[:, 0]


class TaskHeads(nn.Module):
    """All task heads as one linear layer: task t owns columns [offset_t, offset_t + num_labels_t).

    The forward is one matmul and a gather by task id; classes past a task's label count get -inf.
    """

    def __init__(self, config: CaMtlConfig):
        super().__init__()
        self.num_labels = [len(config.task_labels[task]) or 1 for task in config.tasks]
        self.regression = [not config.task_labels[task] for task in config.tasks]
        self.label_ranges = [TASKS[task].label_range or (0.0, 1.0) for task in config.tasks]
        self.dropout = nn.Dropout(HEAD_DROPOUT)
        self.classifier = nn.Linear(config.hidden_size, sum(self.num_labels))
        for name, table in self.tables().items():
            self.register_buffer(name, table, persistent=False)

    def tables(self) -> dict[str, torch.Tensor]:
        """Per-task lookup tables, indexed by task id (rebuilt from the config, never saved)."""
        max_labels = max(self.num_labels)
        offsets = torch.tensor([0, *self.num_labels]).cumsum(0)[:-1]
        num_labels = torch.tensor(self.num_labels)
        classes = torch.arange(max_labels)
        return {
            # padded classes point at the task's last column and are masked to -inf afterwards
            "columns": offsets[:, None] + torch.minimum(classes[None, :], num_labels[:, None] - 1),
            "valid_classes": classes[None, :] < num_labels[:, None],
            "is_regression": torch.tensor(self.regression),
            "max_entropy": num_labels.double().log().float() + ENTROPY_EPS,
            "label_range": torch.tensor(self.label_ranges),  # (T, 2): regression targets' low and high
        }

    def forward(self, pooled_output: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        # fp32 also under autocast: a (B, d) x (d, C) product is cheap, and bf16 logits tie entropies.
        device_type = "cpu" if pooled_output.device.type == "meta" else pooled_output.device.type
        with torch.autocast(device_type, enabled=False):
            all_logits = self.classifier(self.dropout(pooled_output.float()))  # (B, sum of label counts)
        logits = all_logits.gather(1, self.columns[task_ids])  # (B, C)
        return logits.masked_fill(~self.valid_classes[task_ids], float("-inf"))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        """Per-example loss (B,): cross-entropy on the task's classes, or squared error for regression."""
        logits = logits.float()  # the loss in full precision, also under autocast
        is_regression = self.is_regression[task_ids]
        class_index = torch.where(is_regression, 0, labels.long())
        cross_entropy = -logits.log_softmax(-1).gather(1, class_index[:, None]).squeeze(1)
        squared_error = (logits[:, 0] - labels.float()) ** 2
        return torch.where(is_regression, squared_error, cross_entropy)

    def entropy(self, logits: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        """Normalised predictive entropy (B,) in [0, 1], fp32, no gradient: H(softmax) / (log C_t + 1e-5).

        A regression head has one output, whose softmax is certain: 0, as in the authors' code.
        MT-Uncertainty scores regression candidates by its own rule (``camtl.sampling``).
        """
        logits = logits.detach().float()
        entropy = torch.special.entr(logits.softmax(-1)).sum(-1)
        entropy = entropy / self.max_entropy[task_ids]
        return entropy.masked_fill(self.is_regression[task_ids], 0.0)


def reduce_loss(per_example: torch.Tensor, task_ids: torch.Tensor, num_tasks: int, mode: str) -> torch.Tensor:
    """The loss of a mixed-task batch.

    task_mean (the authors'): the mean over the tasks present in the batch of each task's mean loss, so a
    task's weight does not depend on how many of its examples the batch holds. example_mean: the mean over
    examples. Computed without a host sync (no boolean indexing).
    """
    if mode == "example_mean":
        return per_example.mean()
    sums = per_example.new_zeros(num_tasks).index_add_(0, task_ids, per_example)  # (T,)
    counts = per_example.new_zeros(num_tasks).index_add_(0, task_ids, torch.ones_like(per_example))
    task_means = sums / counts.clamp(min=1)
    return task_means.sum() / (counts > 0).sum()
