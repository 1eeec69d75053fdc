"""Tokenizing Examples of every task type into flat, unpadded arrays (TaskFeatures).

- classification / regression: one sequence per example, text or text pair;
- multiple choice: one sequence per choice, (context, choice);
- token classification: the example's words, tagged on their first sub-token (later sub-tokens -100);
- masked LM: the texts' tokens concatenated and cut into blocks of max_seq_length (special tokens added),
  one example per block; which tokens are masked is drawn when batches are made (``camtl.data.collation``).
"""

from __future__ import annotations

import numpy as np
import torch

from camtl.data.examples import Examples
from camtl.tasks import TASKS

TOKENIZE_CHUNK = 4096
IGNORE = -100


def tokenize_examples(examples: Examples, tokenizer, max_seq_length: int) -> dict:
    """Batched fast tokenization, truncated to ``max_seq_length``, without padding: TaskFeatures' fields."""
    kind = TASKS[examples.task].type
    if kind == "multiple_choice":
        return _multiple_choice(examples, tokenizer, max_seq_length)
    if kind == "token_classification":
        return _token_classification(examples, tokenizer, max_seq_length)
    if kind == "masked_lm":
        return _masked_lm(examples, tokenizer, max_seq_length)
    encoded = _encode(tokenizer, examples.text_a, examples.text_b, max_seq_length)
    return _features(examples, *encoded, labels=_labels(examples))


def _encode(tokenizer, text_a, text_b, max_seq_length: int, **options) -> tuple[list, list]:
    input_ids, token_type_ids = [], []
    for start in range(0, len(text_a), TOKENIZE_CHUNK):
        end = start + TOKENIZE_CHUNK
        encoded = tokenizer(
            text_a[start:end],
            text_b[start:end] if text_b is not None else None,
            truncation=True,
            max_length=max_seq_length,
            padding=False,
            return_token_type_ids=True,
            return_attention_mask=False,
            **options,
        )
        input_ids.extend(encoded["input_ids"])
        token_type_ids.extend(encoded["token_type_ids"])
    return input_ids, token_type_ids


def _flat(sequences: list[list[int]], dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The sequences concatenated, and their offsets (len + 1)."""
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter((t for s in sequences for t in s), dtype=dtype, count=int(offsets[-1]))
    return torch.from_numpy(flat), torch.from_numpy(offsets)


def _labels(examples: Examples) -> torch.Tensor | None:
    return torch.tensor(examples.labels, dtype=torch.float32) if examples.labels is not None else None


def _features(examples: Examples, input_ids, token_type_ids, labels, **extra) -> dict:
    flat_ids, offsets = _flat(input_ids, np.int32)
    flat_types, _ = _flat(token_type_ids, np.int8)
    return {
        "task": examples.task,
        "split": examples.split,
        "input_ids": flat_ids,
        "token_type_ids": flat_types,
        "offsets": offsets,
        "labels": labels,
        "ids": list(examples.ids),
        **extra,
    }


def _multiple_choice(examples: Examples, tokenizer, max_seq_length: int) -> dict:
    contexts = [
        context for context, choices in zip(examples.text_a, examples.choices, strict=True) for _ in choices
    ]
    choices = [choice for row in examples.choices for choice in row]
    input_ids, token_type_ids = _encode(tokenizer, contexts, choices, max_seq_length)
    example_offsets = torch.tensor([0, *(len(row) for row in examples.choices)]).cumsum(
        0
    )  # choices per example
    return _features(examples, input_ids, token_type_ids, _labels(examples), example_offsets=example_offsets)


def _token_classification(examples: Examples, tokenizer, max_seq_length: int) -> dict:
    input_ids, token_type_ids, word_starts, token_labels = [], [], [], []
    for start in range(0, len(examples), TOKENIZE_CHUNK):
        words = examples.text_a[start : start + TOKENIZE_CHUNK]
        encoded = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_seq_length,
                            return_token_type_ids=True, return_attention_mask=False)  # fmt: skip
        for row, ids in enumerate(encoded["input_ids"]):
            word_ids = encoded.word_ids(row)
            starts = [int(w is not None and (i == 0 or word_ids[i - 1] != w)) for i, w in enumerate(word_ids)]
            input_ids.append(ids)
            token_type_ids.append(encoded["token_type_ids"][row])
            word_starts.append(starts)
            if examples.labels is not None:
                tags = examples.labels[start + row]
                token_labels.append([tags[w] if s else IGNORE for w, s in zip(word_ids, starts, strict=True)])
    labels = torch.zeros(len(examples)) if examples.labels is not None else None
    return _features(
        examples,
        input_ids,
        token_type_ids,
        labels,
        word_starts=_flat(word_starts, np.int8)[0],
        token_labels=_flat(token_labels, np.int16)[0] if examples.labels is not None else None,
        word_tags=[list(tags) for tags in examples.labels] if examples.labels is not None else None,
        word_counts=[len(words) for words in examples.text_a],  # test sets too: one tag per word out
    )


def _masked_lm(examples: Examples, tokenizer, max_seq_length: int) -> dict:
    ends = [[t] if t is not None else [] for t in (tokenizer.cls_token_id, tokenizer.sep_token_id)]
    body = max_seq_length - len(ends[0]) - len(ends[1])
    tokens = []
    for start in range(0, len(examples), TOKENIZE_CHUNK):
        encoded = tokenizer(examples.text_a[start : start + TOKENIZE_CHUNK], add_special_tokens=False)
        tokens.extend(token for ids in encoded["input_ids"] for token in ids)
    blocks = [ends[0] + tokens[i : i + body] + ends[1] for i in range(0, len(tokens), body)]
    blocked = Examples(task=examples.task, split=examples.split, text_a=[], text_b=None, labels=None,
                       ids=[str(i) for i in range(len(blocks))])  # fmt: skip
    return _features(blocked, blocks, [[0] * len(block) for block in blocks], torch.zeros(len(blocks)))
