"""Pooling, the task heads of every task type, their losses and entropies, and the loss of a mixed batch.

A mixed batch holds B examples of any types and S >= B encoded sequences (a multiple-choice example has
one sequence per choice). Shapes: L length, d hidden size, C the widest output of a sequence-level task
(classes or choices), K the widest tag set, M masked positions, V the vocabulary, T tasks.

- classification / regression: a linear head on the pooled sequence (one column per class, or one);
- multiple choice: one score per choice from a one-column head on each choice's pooled sequence,
  softmax over the example's choices;
- token classification: a linear head on every token's state, labels on the first sub-token of a word;
- masked LM: the backbone's MLM head (a fresh one tied to the input embeddings when the checkpoint has
  none) on the masked positions the collator chose.

All sequence-level heads are one linear layer whose columns are gathered per example, all tag sets one
more: a mixed batch costs one matmul per level. Tasks that share a head (a task file's ``head``) share
its columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN

from camtl.model.configuration import CaMtlConfig

HEAD_DROPOUT = 0.1  # the authors' decoder: Dropout(0.1) before each task's linear layer
ENTROPY_EPS = 1e-5  # the authors normalise an entropy by log(num_labels) + 1e-5
TYPE_CODES = {
    "classification": 0,
    "regression": 1,
    "multiple_choice": 2,
    "token_classification": 3,
    "masked_lm": 4,
}
SEQUENCE_TYPES = ("classification", "regression", "multiple_choice")
IGNORE = -100  # token labels without a loss (padding, later sub-tokens, unmasked MLM positions)


def pool(sequence: torch.Tensor, attention_mask: torch.Tensor | None, mode: str, pooler: nn.Module | None):
    """(S, d) from the encoder output (S, L, d).

    cls: the backbone's [CLS] pooler (BERT, RoBERTa: tanh(W h_[CLS] + b)), or the [CLS] state itself for a
    backbone without one (ELECTRA, DeBERTa, ModernBERT). mean: the mean over the real (unpadded) tokens.
    """
    if mode == "mean":
        if attention_mask is None:
            return sequence.mean(1)
        weights = attention_mask.to(sequence.dtype).unsqueeze(-1)  # (S, L, 1)
        return (sequence * weights).sum(1) / weights.sum(1).clamp(min=1)
    return pooler(sequence) if pooler is not None else sequence[:, 0]


class MaskedLMHead(nn.Module):
    """BERT's MLM head: decoder(LayerNorm(act(W h))) + bias, the decoder tied to the input embeddings."""

    def __init__(self, hidden_size: int, vocab_size: int, activation: str, eps: float):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.activation = ACT2FN[activation]
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, hidden_states: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        transformed = self.LayerNorm(self.activation(self.dense(hidden_states)))  # (M, d)
        return F.linear(transformed, word_embeddings, self.bias)  # (M, V)


@dataclass
class HeadInputs:
    """What the heads read: the encoder's outputs and where each example's sequences and labels are."""

    pooled: torch.Tensor  # (S, d)
    sequence: torch.Tensor  # (S, L, d)
    task_ids: torch.Tensor  # (B,)
    sequence_task: torch.Tensor  # (S,) the task of each sequence
    sequence_owner: torch.Tensor  # (S,) the example of each sequence
    first_sequence: torch.Tensor  # (B,) each example's sequence (its first choice)
    choice_sequences: torch.Tensor | None = None  # (B, C') each choice's sequence, -1 past the last
    mlm_positions: torch.Tensor | None = None  # (M,) masked positions as flat indices into S x L
    word_embeddings: torch.Tensor | None = None  # (V, d) the tied MLM decoder


@dataclass
class HeadOutputs:
    logits: torch.Tensor  # (B, C): classes, a score, or choices; -inf where a task has fewer
    token_logits: torch.Tensor | None = None  # (S, L, K)
    mlm_logits: torch.Tensor | None = None  # (M, V)


def _full_precision(tensor: torch.Tensor):
    """fp32 also under autocast: the heads are cheap, and bf16 logits tie the entropies MT-U ranks."""
    return torch.autocast("cpu" if tensor.device.type == "meta" else tensor.device.type, enabled=False)


def _normalised_entropy(logits: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """H(softmax(logits)) / (log count + 1e-5) over the last axis (-inf entries are impossible classes)."""
    entropy = torch.special.entr(logits.float().softmax(-1)).sum(-1)
    return entropy / (count.float().log() + ENTROPY_EPS)


class TaskHeads(nn.Module):
    """Every task's head, computed for a whole mixed batch, with per-example losses and entropies."""

    def __init__(
        self, config: CaMtlConfig, vocab_size: int | None = None, activation: str = "gelu", eps: float = 1e-12
    ):
        super().__init__()
        specs = [config.task_specs[task] for task in config.tasks]
        self.types = [spec["type"] for spec in specs]
        self.num_labels = [len(spec["labels"]) or 1 for spec in specs]
        self.label_ranges = [tuple(spec.get("label_range") or (0.0, 1.0)) for spec in specs]
        weights = config.task_weights or {}
        self.loss_weights = [
            weights.get(task, float(spec.get("loss_weight", 1.0)))
            for task, spec in zip(config.tasks, specs, strict=True)
        ]
        heads = [spec.get("head") or task for spec, task in zip(specs, config.tasks, strict=True)]
        width = [
            1 if kind == "multiple_choice" else n for kind, n in zip(self.types, self.num_labels, strict=True)
        ]
        self.sequence_offsets, sequence_columns = self._columns(heads, width, SEQUENCE_TYPES)
        self.token_offsets, token_columns = self._columns(heads, width, ("token_classification",))
        self.dropout = nn.Dropout(HEAD_DROPOUT)
        self.classifier = (
            nn.Linear(config.hidden_size, max(sequence_columns, 1)) if sequence_columns else None
        )
        self.token_classifier = nn.Linear(config.hidden_size, token_columns) if token_columns else None
        needs_mlm = "masked_lm" in self.types
        self.mlm = MaskedLMHead(config.hidden_size, vocab_size, activation, eps) if needs_mlm else None
        for name, table in self.tables().items():
            self.register_buffer(name, table, persistent=False)

    def _columns(self, heads: list[str], width: list[int], kinds: tuple[str, ...]) -> tuple[list[int], int]:
        """Column offset of each task in the head layer of ``kinds`` (tasks sharing a head share columns)."""
        offsets, owner_offset, total = [], {}, 0
        for head, kind, size in zip(heads, self.types, width, strict=True):
            if kind not in kinds:
                offsets.append(0)
                continue
            if head not in owner_offset:
                owner_offset[head], total = total, total + size
            offsets.append(owner_offset[head])
        return offsets, total

    def tables(self) -> dict[str, torch.Tensor]:
        """Per-task lookup tables, indexed by task id (rebuilt from the config, never saved)."""
        kinds = self.types
        class_counts = [
            n if k == "classification" else 1 for k, n in zip(kinds, self.num_labels, strict=True)
        ]
        tag_counts = [
            n if k == "token_classification" else 1 for k, n in zip(kinds, self.num_labels, strict=True)
        ]
        # Sizes from Python lists: from_pretrained builds the model on the meta device, where .max() fails.
        classes, tags = torch.tensor(class_counts), torch.tensor(tag_counts)
        class_index, tag_index = torch.arange(max(class_counts)), torch.arange(max(tag_counts))
        types = torch.tensor([TYPE_CODES[kind] for kind in kinds])
        return {
            "type_code": types,
            # padded classes point at the task's last column and are masked to -inf afterwards
            "columns": torch.tensor(self.sequence_offsets)[:, None]
            + torch.minimum(class_index, classes[:, None] - 1),
            "valid_classes": class_index[None, :] < classes[:, None],
            "token_columns": torch.tensor(self.token_offsets)[:, None]
            + torch.minimum(tag_index, tags[:, None] - 1),
            "valid_tags": tag_index[None, :] < tags[:, None],
            "tag_count": tags,
            "is_regression": types == TYPE_CODES["regression"],
            "label_range": torch.tensor(self.label_ranges),  # (T, 2): regression targets' low and high
            "loss_weight": torch.tensor(self.loss_weights),
        }

    def forward(self, batch: HeadInputs) -> HeadOutputs:
        """Logits of every example's task (B, C); token logits (S, L, K); MLM logits (M, V)."""
        with _full_precision(batch.pooled):
            outputs = HeadOutputs(logits=self._sequence_logits(batch))
            if self.token_classifier is not None:
                states = self.dropout(batch.sequence.float())
                token_logits = self.token_classifier(states)  # (S, L, all tag columns)
                columns = self.token_columns[batch.sequence_task]  # (S, K)
                index = columns[:, None, :].expand(-1, token_logits.shape[1], -1)
                valid = self.valid_tags[batch.sequence_task][:, None, :]  # a task's tags, not the widest
                outputs.token_logits = token_logits.gather(2, index).masked_fill(~valid, float("-inf"))
            if self.mlm is not None and batch.mlm_positions is not None:
                states = batch.sequence.float().flatten(0, 1)[batch.mlm_positions]  # (M, d)
                outputs.mlm_logits = self.mlm(states, batch.word_embeddings.float())
        return outputs

    def _sequence_logits(self, batch: HeadInputs) -> torch.Tensor:
        if self.classifier is None:
            return batch.pooled.new_zeros(len(batch.task_ids), 1)
        all_logits = self.classifier(self.dropout(batch.pooled.float()))  # (S, all sequence columns)
        task_ids = batch.task_ids
        first = batch.first_sequence
        logits = all_logits[first].gather(1, self.columns[task_ids])  # (B, C) from each example's sequence
        logits = logits.masked_fill(~self.valid_classes[task_ids], float("-inf"))
        if batch.choice_sequences is None:
            return logits
        choices = batch.choice_sequences  # (B, C'): the sequence of each choice, -1 past the last
        scores = all_logits[choices.clamp(min=0)]  # (B, C', all sequence columns)
        column = self.columns[task_ids, :1, None].expand(-1, choices.shape[1], 1)
        scores = scores.gather(2, column).squeeze(2).masked_fill(choices < 0, float("-inf"))  # (B, C')
        width = max(logits.shape[1], scores.shape[1])
        logits, scores = (
            F.pad(logits, (0, width - logits.shape[1]), value=float("-inf")),
            F.pad(scores, (0, width - scores.shape[1]), value=float("-inf")),
        )
        is_choice = (self.type_code[task_ids] == TYPE_CODES["multiple_choice"])[:, None]
        return torch.where(is_choice, scores, logits)

    def loss(
        self,
        outputs: HeadOutputs,
        batch: HeadInputs,
        labels: torch.Tensor,
        token_labels: torch.Tensor | None = None,
        mlm_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-example loss (B,): cross-entropy over classes or choices, squared error for regression, and the
        mean cross-entropy over an example's labelled tokens or masked positions."""
        task_ids = batch.task_ids
        logits = outputs.logits.float()
        is_regression = self.is_regression[task_ids]
        class_index = torch.where(is_regression, 0, labels.long().clamp(min=0))
        cross_entropy = -logits.log_softmax(-1).gather(1, class_index[:, None]).squeeze(1)
        squared_error = (logits[:, 0] - labels.float()) ** 2
        loss = torch.where(is_regression, squared_error, cross_entropy)
        kinds = self.type_code[task_ids]
        if outputs.token_logits is not None and token_labels is not None:
            per_token = F.cross_entropy(
                outputs.token_logits.transpose(1, 2), token_labels, ignore_index=IGNORE, reduction="none"
            )  # (S, L)
            token_loss = _mean_per_example(per_token, token_labels != IGNORE, batch)
            loss = torch.where(kinds == TYPE_CODES["token_classification"], token_loss, loss)
        if outputs.mlm_logits is not None and mlm_labels is not None:
            per_position = F.cross_entropy(outputs.mlm_logits, mlm_labels, reduction="none")  # (M,)
            mlm_loss = _mean_per_position_owner(per_position, batch)
            loss = torch.where(kinds == TYPE_CODES["masked_lm"], mlm_loss, loss)
        return loss

    def entropy(
        self, outputs: HeadOutputs, batch: HeadInputs, token_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Normalised predictive entropy (B,) in [0, 1], fp32, no gradient: H / (log C + 1e-5), C the
        example's classes or choices; the mean over labelled tokens (log K) or masked positions (log V); 0 for
        regression (MT-Uncertainty scores those by its own rule, ``camtl.training.sampling``)."""
        task_ids = batch.task_ids
        logits = outputs.logits.detach()
        count = torch.isfinite(logits).sum(-1)  # classes of the task, or choices of the example
        entropy = _normalised_entropy(logits, count)
        kinds = self.type_code[task_ids]
        if outputs.token_logits is not None and token_labels is not None:
            token_logits = outputs.token_logits.detach()
            per_token = _normalised_entropy(token_logits, self.tag_count[batch.sequence_task][:, None])
            token_entropy = _mean_per_example(per_token, token_labels != IGNORE, batch)
            entropy = torch.where(kinds == TYPE_CODES["token_classification"], token_entropy, entropy)
        if outputs.mlm_logits is not None:
            vocab = torch.full_like(outputs.mlm_logits[:, 0], outputs.mlm_logits.shape[1])
            per_position = _normalised_entropy(outputs.mlm_logits.detach(), vocab)
            entropy = torch.where(
                kinds == TYPE_CODES["masked_lm"], _mean_per_position_owner(per_position, batch), entropy
            )
        return entropy.masked_fill(self.is_regression[task_ids], 0.0)


def _mean_per_example(per_token: torch.Tensor, labelled: torch.Tensor, batch: HeadInputs) -> torch.Tensor:
    """(B,) mean over each example's labelled tokens of a (S, L) quantity (0 where it has none)."""
    sums = (per_token * labelled).sum(1)  # (S,)
    counts = labelled.sum(1)
    return sums[batch.first_sequence] / counts[batch.first_sequence].clamp(min=1)


def _mean_per_position_owner(per_position: torch.Tensor, batch: HeadInputs) -> torch.Tensor:
    """(B,) mean over each example's masked positions of an (M,) quantity (0 where it has none)."""
    length = batch.sequence.shape[1]
    owner = batch.sequence_owner[batch.mlm_positions // length]  # (M,)
    size = len(batch.task_ids)
    sums = per_position.new_zeros(size).index_add_(0, owner, per_position)
    counts = per_position.new_zeros(size).index_add_(0, owner, torch.ones_like(per_position))
    return sums / counts.clamp(min=1)


def reduce_loss(
    per_example: torch.Tensor, task_ids: torch.Tensor, weights: torch.Tensor, mode: str
) -> torch.Tensor:
    """The loss of a mixed-task batch, each task's loss scaled by its weight (1 unless a task sets one).

    task_mean (the authors'): the mean over the tasks present in the batch of each task's weighted mean
    loss, so a task's weight does not depend on how many of its examples the batch holds. example_mean:
    the mean over examples of their weighted losses. Computed without a host sync (no boolean indexing).
    """
    if mode == "example_mean":
        return (per_example * weights[task_ids]).mean()
    num_tasks = len(weights)
    sums = per_example.new_zeros(num_tasks).index_add_(0, task_ids, per_example)  # (T,)
    counts = per_example.new_zeros(num_tasks).index_add_(0, task_ids, torch.ones_like(per_example))
    task_means = sums / counts.clamp(min=1) * weights
    return task_means.sum() / (counts > 0).sum()
