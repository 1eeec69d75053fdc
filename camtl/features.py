"""Tokenized GLUE splits: batched fast tokenization, an on-disk cache, datasets and the collator.

Examples are stored unpadded (one flat token array + offsets per split); batches are padded to
their longest example at collate time. The cache is keyed by everything that changes the tokens
and is written atomically under a file lock, so concurrent ranks build each file once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from torch.utils.data import Dataset

from camtl.data import read_split, require_split

logger = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1
TOKENIZE_CHUNK = 4096


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "camtl" / "features"


def tokenizer_fingerprint(tokenizer) -> str:
    """Identity of a tokenizer: its full serialized state (vocabulary, normalizer, special tokens)."""
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    # Truncation and padding settings are call-time state that the tokenizer keeps from its last call.
    state.pop("truncation", None)
    state.pop("padding", None)
    state["special_tokens"] = tokenizer.special_tokens_map
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


@dataclass
class TaskFeatures:
    """One tokenized split, unpadded: example i is ``input_ids[offsets[i]:offsets[i + 1]]``."""

    task: str
    split: str
    input_ids: torch.Tensor  # int32, all examples concatenated
    token_type_ids: torch.Tensor  # int8, same layout
    offsets: torch.Tensor  # int64, len = num_examples + 1
    labels: torch.Tensor | None  # float32 class index or score; None for test
    ids: list[str]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def to_state(self, key: str) -> dict:
        return {
            "key": key,
            "input_ids": self.input_ids,
            "token_type_ids": self.token_type_ids,
            "offsets": self.offsets,
            "labels": self.labels,
            "ids": self.ids,
        }

    @classmethod
    def from_state(cls, state: dict, task: str, split: str, key: str) -> TaskFeatures:
        """Rebuild from a cache file's content, checking that it is whole and belongs to ``key``."""
        features = cls(
            task=task,
            split=split,
            input_ids=state["input_ids"],
            token_type_ids=state["token_type_ids"],
            offsets=state["offsets"],
            labels=state["labels"],
            ids=state["ids"],
        )
        n = len(features)
        consistent = (
            state["key"] == key
            and n >= 0
            and int(features.offsets[-1]) == len(features.input_ids) == len(features.token_type_ids)
            and len(features.ids) == n
            and (features.labels is None or len(features.labels) == n)
        )
        if not consistent:
            raise ValueError("cache content does not match its key or its own sizes")
        return features


def tokenize_examples(examples, tokenizer, max_seq_length: int) -> TaskFeatures:
    """Batched fast tokenization of text pairs, truncated to ``max_seq_length``, without padding."""
    input_ids, token_type_ids = [], []
    for start in range(0, len(examples), TOKENIZE_CHUNK):
        end = start + TOKENIZE_CHUNK
        pair = examples.text_b[start:end] if examples.text_b is not None else None
        encoded = tokenizer(
            examples.text_a[start:end],
            pair,
            truncation=True,
            max_length=max_seq_length,
            padding=False,
            return_token_type_ids=True,
            return_attention_mask=False,
        )
        input_ids.extend(encoded["input_ids"])
        token_type_ids.extend(encoded["token_type_ids"])
    lengths = np.fromiter((len(ids) for ids in input_ids), dtype=np.int64, count=len(input_ids))
    offsets = np.zeros(len(input_ids) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat_ids = np.fromiter((t for ids in input_ids for t in ids), dtype=np.int32, count=int(offsets[-1]))
    flat_types = np.fromiter(
        (t for ids in token_type_ids for t in ids), dtype=np.int8, count=int(offsets[-1])
    )
    labels = torch.tensor(examples.labels, dtype=torch.float32) if examples.labels is not None else None
    return TaskFeatures(
        task=examples.task,
        split=examples.split,
        input_ids=torch.from_numpy(flat_ids),
        token_type_ids=torch.from_numpy(flat_types),
        offsets=torch.from_numpy(offsets),
        labels=labels,
        ids=list(examples.ids),
    )


def _cache_key(
    data_dir: str | Path, task: str, split: str, tokenizer, max_seq_length: int, max_examples: int | None
) -> str:
    stat = require_split(data_dir, task, split, needed_by=f"{task} {split}").stat()
    return json.dumps(
        {
            "version": CACHE_FORMAT_VERSION,
            "task": task,
            "split": split,
            "tokenizer": tokenizer_fingerprint(tokenizer),
            "max_seq_length": max_seq_length,
            "max_examples": max_examples,
            "source_size": stat.st_size,
            "source_mtime_ns": stat.st_mtime_ns,
        },
        sort_keys=True,
    )


def _atomic_save(state: dict, path: Path) -> None:
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            torch.save(state, f)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def load_features(
    data_dir: str | Path,
    task: str,
    split: str,
    tokenizer,
    max_seq_length: int,
    cache_dir: str | Path | None = None,
    max_examples: int | None = None,
    overwrite_cache: bool = False,
) -> TaskFeatures:
    """Tokenized split from the cache, built (once, under a lock) when missing, stale or corrupt."""
    key = _cache_key(data_dir, task, split, tokenizer, max_seq_length, max_examples)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    path = cache_dir / f"{task}-{split}-{digest}.pt"
    with FileLock(str(path) + ".lock"):
        if path.exists() and not overwrite_cache:
            try:
                return TaskFeatures.from_state(torch.load(path, weights_only=True), task, split, key)
            except Exception as error:  # any unreadable cache is rebuilt, never fatal
                reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                logger.warning("feature cache %s is corrupt (%s); rebuilding it", path, reason)
        features = tokenize_examples(
            read_split(data_dir, task, split, max_examples), tokenizer, max_seq_length
        )
        try:
            _atomic_save(features.to_state(key), path)
        except (OSError, RuntimeError) as error:  # a full disk costs the cache, not the run
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            logger.warning("cannot write the feature cache %s (%s): continuing without it", path, reason)
        return features


class TaskDataset(Dataset):
    """One task's split as a dataset of unpadded examples tagged with the model's task id."""

    def __init__(self, features: TaskFeatures, task_id: int):
        self.features = features
        self.task_id = task_id

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict:
        f = self.features
        start, end = int(f.offsets[i]), int(f.offsets[i + 1])
        return {
            "input_ids": f.input_ids[start:end],
            "token_type_ids": f.token_type_ids[start:end],
            "label": float(f.labels[i]) if f.labels is not None else 0.0,
            "task_id": self.task_id,
            "example_index": i,
        }


class MultiTaskCollator:
    """Pads a list of examples to the longest one (or to ``pad_to``) and stacks the per-example fields."""

    def __init__(self, pad_token_id: int, pad_to: int | None = None):
        self.pad_token_id = pad_token_id
        self.pad_to = pad_to

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        length = self.pad_to or max(len(e["input_ids"]) for e in examples)
        input_ids = torch.full((len(examples), length), self.pad_token_id, dtype=torch.long)
        token_type_ids = torch.zeros((len(examples), length), dtype=torch.long)
        attention_mask = torch.zeros((len(examples), length), dtype=torch.long)
        for row, example in enumerate(examples):
            n = len(example["input_ids"])
            input_ids[row, :n] = example["input_ids"]
            token_type_ids[row, :n] = example["token_type_ids"]
            attention_mask[row, :n] = 1
        return {
            "input_ids": input_ids,
            "token_type_ids": token_type_ids,
            "attention_mask": attention_mask,
            "task_ids": torch.tensor([e["task_id"] for e in examples], dtype=torch.long),
            "labels": torch.tensor([e["label"] for e in examples], dtype=torch.float32),
            "example_index": torch.tensor([e["example_index"] for e in examples], dtype=torch.long),
        }
