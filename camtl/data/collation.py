"""Making batches: padding the examples of any task types into one mixed batch, and masking for masked LM.

A batch of B examples holds S >= B sequences, one per example or one per choice of a multiple-choice
example (the model's ``forward`` documents the keys). Everything here runs on the CPU, where the
lengths, the choices and the masked positions are known without asking the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE = -100
SEQUENCE_KEYS = ("input_ids", "token_type_ids", "attention_mask", "word_starts", "token_labels")


@dataclass(frozen=True)
class Masking:
    """BERT's masked-LM corruption: ``probability`` of the real tokens (never [CLS]/[SEP]) are chosen;
    80% of those become [MASK], 10% a random token, 10% stay. Every masked-LM example gets at least one."""

    mask_token_id: int
    vocab_size: int
    probability: float = 0.15

    @classmethod
    def of(cls, tokenizer) -> Masking | None:
        if tokenizer.mask_token_id is None:
            return None
        return cls(tokenizer.mask_token_id, len(tokenizer))


def model_inputs(batch: dict[str, torch.Tensor], labels: bool = True) -> dict[str, torch.Tensor]:
    """The batch's keys that ``CaMtlModel.forward`` takes: not the bookkeeping ones (example indices, the
    words' first sub-tokens that prediction reads), and without the labels when ``labels`` is False."""
    dropped = {"example_index", "word_starts"} | (set() if labels else {"labels"})
    return {key: value for key, value in batch.items() if key not in dropped}


def sequence_lengths(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Real tokens per sequence (S,): a batch without an attention mask has no padding."""
    if "attention_mask" in batch:
        return batch["attention_mask"].sum(1)
    rows, width = batch["input_ids"].shape
    return torch.full((rows,), width, dtype=torch.long, device=batch["input_ids"].device)


class MultiTaskCollator:
    """Pads a list of examples of any task types into one batch.

    Sequences are padded to the longest one (or to ``pad_to``); ``pad_to_multiple_of`` rounds that up (GPU
    kernels prefer a multiple of 8), never beyond ``max_length``. A batch in which no sequence is padded
    gets no ``attention_mask``: the backbone then runs attention without one. ``masking`` corrupts masked-LM
    examples; with ``fixed_masks`` (evaluation) each example's masks depend only on its index, so that
    every evaluation scores the same positions.
    """

    def __init__(
        self,
        pad_token_id: int,
        pad_to: int | None = None,
        pad_to_multiple_of: int | None = None,
        masking: Masking | None = None,
        fixed_masks: bool = False,
        max_length: int | None = None,
    ):
        self.pad_token_id = pad_token_id
        self.pad_to = pad_to
        self.pad_to_multiple_of = pad_to_multiple_of
        self.max_length = max_length
        self.masking = masking
        self.fixed_masks = fixed_masks

    def padded_length(self, longest: int) -> int:
        if self.pad_to is not None:
            return self.pad_to
        multiple = self.pad_to_multiple_of or 1
        rounded = -(-longest // multiple) * multiple
        # Never past --max_seq_length: the model's positions (and M(z)) end there.
        return min(rounded, max(longest, self.max_length)) if self.max_length else rounded

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        sequences, owners, choices = [], [], []
        for row, example in enumerate(examples):
            parts = example.get("choices", [example])
            choices.append(list(range(len(sequences), len(sequences) + len(parts))))
            sequences.extend(parts)
            owners.extend([row] * len(parts))
        lengths = [len(sequence["input_ids"]) for sequence in sequences]
        length = self.padded_length(max(lengths))
        batch = self._pad(sequences, length)
        if min(lengths) == length:
            del batch["attention_mask"]
        if len(sequences) > len(examples):
            batch["sequence_owner"] = torch.tensor(owners)
            widest = max(len(row) for row in choices)
            batch["choice_sequences"] = torch.tensor([row + [-1] * (widest - len(row)) for row in choices])
        if any(example.get("mlm") for example in examples):
            self._mask(batch, examples, [row[0] for row in choices], lengths)
        batch["task_ids"] = torch.tensor([e["task_id"] for e in examples], dtype=torch.long)
        batch["labels"] = torch.tensor([e["label"] for e in examples], dtype=torch.float32)
        batch["example_index"] = torch.tensor([e["example_index"] for e in examples], dtype=torch.long)
        return batch

    def _pad(self, sequences: list[dict], length: int) -> dict[str, torch.Tensor]:
        rows = len(sequences)
        batch = {
            "input_ids": torch.full((rows, length), self.pad_token_id, dtype=torch.long),
            "token_type_ids": torch.zeros((rows, length), dtype=torch.long),
            "attention_mask": torch.zeros((rows, length), dtype=torch.long),
        }
        tagged = [sequence for sequence in sequences if "word_starts" in sequence]
        if tagged:
            batch["word_starts"] = torch.zeros((rows, length), dtype=torch.long)
        if any("token_labels" in sequence for sequence in tagged):
            batch["token_labels"] = torch.full((rows, length), IGNORE, dtype=torch.long)
        for row, sequence in enumerate(sequences):
            n = len(sequence["input_ids"])
            batch["attention_mask"][row, :n] = 1
            for key in ("input_ids", "token_type_ids", "word_starts", "token_labels"):
                if key in sequence and key in batch:
                    batch[key][row, :n] = sequence[key]
        return batch

    def _mask(self, batch: dict, examples: list[dict], first: list[int], lengths: list[int]) -> None:
        """Corrupt the masked-LM rows in place; ``mlm_positions`` index the flat (S x L) tokens."""
        if self.masking is None:
            raise ValueError("masked-LM examples need a collator with masking (and a tokenizer with [MASK])")
        input_ids, width = batch["input_ids"], batch["input_ids"].shape[1]
        positions, labels = [], []
        for row, example in enumerate(examples):  # one sequence per masked-LM example
            if not example.get("mlm"):
                continue
            sequence = first[row]
            generator = torch.Generator().manual_seed(example["example_index"]) if self.fixed_masks else None
            chosen, replacement = self._draw(input_ids[sequence], lengths[sequence], generator)
            labels.append(input_ids[sequence, chosen].clone())
            input_ids[sequence, chosen] = replacement
            positions.append(sequence * width + chosen)
        batch["mlm_positions"] = torch.cat(positions)
        batch["mlm_labels"] = torch.cat(labels)

    def _draw(self, ids: torch.Tensor, length: int, generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The positions to corrupt (never the first and last real token) and what goes there."""
        inner = torch.arange(1, max(length - 1, 2))
        chosen = inner[torch.rand(len(inner), generator=generator) < self.masking.probability]
        if len(chosen) == 0:
            chosen = inner[torch.randint(len(inner), (1,), generator=generator)]
        action = torch.rand(len(chosen), generator=generator)
        random_tokens = torch.randint(self.masking.vocab_size, (len(chosen),), generator=generator)
        kept_or_random = torch.where(action < 0.9, random_tokens, ids[chosen])
        replacement = torch.where(action < 0.8, self.masking.mask_token_id, kept_or_random)
        return chosen, replacement


def select_examples(batch: dict[str, torch.Tensor], keep: torch.Tensor) -> dict[str, torch.Tensor]:
    """The sub-batch of the examples ``keep`` (B'), their sequences, choices and masked positions with them.

    A batch of one sequence per example is indexed directly (no host sync); with multiple-choice or
    masked-LM examples the kept sequences are looked up, which reads the device once.
    """
    example_keys = ("task_ids", "labels", "example_index")
    if "sequence_owner" not in batch and "mlm_positions" not in batch:
        return {key: value[keep] for key, value in batch.items()}
    rows = len(batch["task_ids"])
    owner = batch.get("sequence_owner", torch.arange(rows, device=keep.device))
    kept_rows = torch.zeros(rows, dtype=torch.bool, device=keep.device).index_fill_(0, keep, True)
    rank = torch.full((rows,), -1, dtype=torch.long, device=keep.device)
    rank[keep] = torch.arange(len(keep), device=keep.device)  # each kept example's new row
    sequences = kept_rows[owner].nonzero().squeeze(1)  # (S') in order
    new_index = torch.full((len(owner),), -1, dtype=torch.long, device=keep.device)
    new_index[sequences] = torch.arange(len(sequences), device=keep.device)
    selected = {key: batch[key][keep] for key in example_keys if key in batch}
    selected |= {key: batch[key][sequences] for key in SEQUENCE_KEYS if key in batch}
    if "sequence_owner" in batch:
        selected["sequence_owner"] = rank[owner[sequences]]
        choices = batch["choice_sequences"][keep]
        selected["choice_sequences"] = torch.where(choices >= 0, new_index[choices.clamp(min=0)], -1)
    if "mlm_positions" in batch:
        width = batch["input_ids"].shape[1]
        positions = batch["mlm_positions"]
        kept = (new_index[positions // width] >= 0).nonzero().squeeze(1)
        selected["mlm_positions"] = new_index[positions[kept] // width] * width + positions[kept] % width
        selected["mlm_labels"] = batch["mlm_labels"][kept]
    return selected
