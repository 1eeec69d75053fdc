"""Tokenized task splits (TaskFeatures), their on-disk cache, and the dataset of one task's examples.

Sequences are stored unpadded (one flat token array + offsets per split); batches are padded when they
are made (``camtl.data.collation``). The cache is keyed by everything that changes the tokens and is written
atomically under a file lock, so concurrent ranks build each file once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock
from torch.utils.data import Dataset

from camtl.data import tokenization
from camtl.data.examples import Examples
from camtl.data.splits import read_split, require_split
from camtl.tasks import TASKS

logger = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 4  # 4: word_counts


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "camtl" / "features"


# Tokenizer settings kept by transformers' Python wrapper, not in the backend's JSON, that change the ids.
WRAPPER_SETTINGS = (
    "truncation_side", "split_special_tokens", "add_prefix_space", "do_lower_case", "strip_accents",
    "tokenize_chinese_chars", "add_bos_token", "add_eos_token",
)  # fmt: skip


def tokenizer_fingerprint(tokenizer) -> str:
    """Identity of a tokenizer: its full serialized state (vocabulary, normalizer, special tokens)."""
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    # Truncation and padding settings are call-time state that the tokenizer keeps from its last call.
    state.pop("truncation", None)
    state.pop("padding", None)
    state["special_tokens"] = tokenizer.special_tokens_map
    # Settings the Python wrapper applies outside the backend that change the tokens too (which end a long
    # pair loses, whether "[SEP]" written in the text is one token): the class and each such setting.
    settings = {name: getattr(tokenizer, name, tokenizer.init_kwargs.get(name)) for name in WRAPPER_SETTINGS}
    state["wrapper"] = [type(tokenizer).__name__, settings]
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class TaskFeatures:
    """One tokenized split, unpadded. Sequence j is ``input_ids[offsets[j]:offsets[j + 1]]``; example i is
    sequence i, or with ``example_offsets`` (multiple choice: one sequence per choice) the sequences
    ``example_offsets[i]:example_offsets[i + 1]``."""

    task: str
    split: str
    input_ids: torch.Tensor  # int32, all sequences concatenated
    token_type_ids: torch.Tensor  # int8, same layout
    offsets: torch.Tensor  # int64, len = num_sequences + 1
    labels: torch.Tensor | None  # float32 per example: class index, score or choice; None for test
    ids: list[str]
    example_offsets: torch.Tensor | None = None  # int64, len = num_examples + 1 (multiple choice)
    word_starts: torch.Tensor | None = None  # int8 like input_ids: 1 on each word's first sub-token
    token_labels: torch.Tensor | None = None  # int16 like input_ids: the tag there, -100 elsewhere
    word_tags: list[list[int]] | None = None  # each example's gold tags, word by word (untruncated)
    word_counts: list[int] | None = None  # token classification: each example's words (untruncated)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def sequence_lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    @property
    def lengths(self) -> torch.Tensor:
        """Tokens per example (all its choices together): what batching by length and sorting look at."""
        if self.example_offsets is None:
            return self.sequence_lengths
        tokens = self.offsets[self.example_offsets]
        return tokens[1:] - tokens[:-1]

    def sequences(self, i: int) -> range:
        if self.example_offsets is None:
            return range(i, i + 1)
        return range(int(self.example_offsets[i]), int(self.example_offsets[i + 1]))

    def to_state(self, key: str) -> dict:
        return {"key": key, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}

    @classmethod
    def from_state(cls, state: dict, task: str, split: str, key: str) -> TaskFeatures:
        """Rebuild from a cache file's content, checking that it is whole and belongs to ``key``."""
        if state.get("key") != key:
            raise ValueError("cache content does not match its key")
        fields = {f.name for f in dataclasses.fields(cls)}
        features = cls(
            **{name: state[name] for name in fields if name in state} | {"task": task, "split": split}
        )
        sequences = len(features.offsets) - 1
        consistent = (
            int(features.offsets[-1]) == len(features.input_ids) == len(features.token_type_ids)
            and sequences
            == (len(features) if features.example_offsets is None else int(features.example_offsets[-1]))
            and (features.labels is None or len(features.labels) == len(features))
        )
        if not consistent:
            raise ValueError("cache content does not match its own sizes")
        return features


def tokenize_examples(examples: Examples, tokenizer, max_seq_length: int) -> TaskFeatures:
    """Tokenized features of ``examples`` (``camtl.data.tokenization`` does it per task type)."""
    return TaskFeatures(**tokenization.tokenize_examples(examples, tokenizer, max_seq_length))


def _cache_key(
    data_dir: str | Path, task: str, split: str, tokenizer, max_seq_length: int, max_examples: int | None
) -> str:
    source = require_split(data_dir, task, split, needed_by=f"{task} {split}")
    return json.dumps(
        {
            "version": CACHE_FORMAT_VERSION,
            "task": task,
            "split": split,
            "tokenizer": tokenizer_fingerprint(tokenizer),
            "max_seq_length": max_seq_length,
            "definition": TASKS[task].to_dict(),  # a task file's fields change the tokens too
            "max_examples": max_examples,
            "source": source_digest(source),
        },
        sort_keys=True,
    )


def source_digest(path: Path) -> str:
    """The content of a split (a file, or every file of a saved dataset's folder): an edit that keeps the
    size and the modification time still changes the key. Hashing reads at disk speed, once per run."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with file.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


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
    """One task's split as a dataset of unpadded examples tagged with the model's task id.

    An item holds its sequence (``input_ids``, ``token_type_ids``, and for token classification
    ``word_starts`` and ``token_labels``), or for multiple choice its ``choices``, each such a sequence;
    and ``label``, ``task_id``, ``example_index``; masked-LM items are marked ``mlm``.
    """

    def __init__(self, features: TaskFeatures, task_id: int):
        self.features = features
        self.task_id = task_id
        self.kind = TASKS[features.task].type

    def __len__(self) -> int:
        return len(self.features)

    def _sequence(self, j: int) -> dict:
        f = self.features
        tokens = slice(int(f.offsets[j]), int(f.offsets[j + 1]))
        sequence = {"input_ids": f.input_ids[tokens], "token_type_ids": f.token_type_ids[tokens]}
        if f.word_starts is not None:
            sequence["word_starts"] = f.word_starts[tokens]
        if f.token_labels is not None:
            sequence["token_labels"] = f.token_labels[tokens]
        return sequence

    def __getitem__(self, i: int) -> dict:
        f = self.features
        item = {
            "label": float(f.labels[i]) if f.labels is not None else 0.0,
            "task_id": self.task_id,
            "example_index": i,
        }
        sequences = [self._sequence(j) for j in f.sequences(i)]
        if self.kind == "multiple_choice":
            item["choices"] = sequences
        else:
            item.update(sequences[0])
        if self.kind == "masked_lm":
            item["mlm"] = True
        return item
