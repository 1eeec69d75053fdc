"""camtl from Python, for your own training loop: tasks, the model, data, a sampler, evaluation.

```python
import camtl.api as camtl
tasks = camtl.load_tasks(["sts-b", "rte", "commonsenseqa"])          # built-in names, or a task file's
model, tokenizer = camtl.build("CA-MTL-mini", tasks, max_seq_length=64)
train = camtl.load_split(tasks, "train", ["../shared/glue", "../shared/data"], tokenizer, 64)
loader = camtl.train_loader(model, tokenizer, train, sampler="proportional", batch_size=16)
for batch in loader:                                                   # mixed-task batches
    model(**camtl.model_inputs(batch)).loss.backward()
```

Every function here is a thin wrapper over the modules ``run.py`` uses; docs/api.md's example runs in
the test suite.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, DataLoader

from camtl.data.collation import Masking, MultiTaskCollator, model_inputs
from camtl.data.features import TaskDataset, TaskFeatures, load_features
from camtl.data.sources import task_data_dir
from camtl.model import CaMtlModel, load_model, load_tokenizer
from camtl.tasks import TASKS, evaluation_tasks, register, resolve_tasks
from camtl.tasks.task_file import load_task_file
from camtl.training.evaluation import evaluate_tasks
from camtl.training.sampling import build_sampler

__all__ = ["build", "collator", "evaluate", "load_split", "load_tasks", "model_inputs", "train_loader"]


def load_tasks(names: list[str] | None = None, task_file: str | Path | None = None) -> list[str]:
    """Canonical training task names; a task file's tasks are registered first (all of them by default)."""
    declared = []
    if task_file is not None:
        for task in load_task_file(task_file):
            register(task)
            declared.append(task.name)
    return resolve_tasks(names or declared or None)


def build(
    model_name_or_path: str, tasks: list[str], max_seq_length: int = 128, **options
) -> tuple[CaMtlModel, object]:
    """The model (CA-MTL-base|large|mini, a backbone or a checkpoint; CaMtlConfig ``options``), tokenizer."""
    model = load_model(model_name_or_path, tasks, max_seq_length=max_seq_length, **options)
    return model, load_tokenizer(model_name_or_path)


def load_split(
    tasks: list[str],
    split: str,
    data_dirs: list[str | Path],
    tokenizer,
    max_seq_length: int = 128,
    max_examples: int | None = None,
    cache_dir: str | Path | None = None,
) -> dict[str, TaskFeatures]:
    """Tokenized features of ``split`` per task; for "dev", also the tasks the heads score (mnli-mm, ...)."""
    names = evaluation_tasks(tasks) if split == "dev" else tasks
    return {
        task: load_features(
            task_data_dir(task, data_dirs),
            task,
            split,
            tokenizer,
            max_seq_length,
            cache_dir=cache_dir,
            max_examples=max_examples,
        )  # fmt: skip
        for task in names
        if TASKS[task].split(split) is not None
    }


def collator(tokenizer, evaluation: bool = False, **options) -> MultiTaskCollator:
    """The collator of mixed batches (masking for masked-LM tasks; fixed masks for evaluation)."""
    return MultiTaskCollator(
        tokenizer.pad_token_id, masking=Masking.of(tokenizer), fixed_masks=evaluation, **options
    )


def train_loader(
    model: CaMtlModel,
    tokenizer,
    train: dict[str, TaskFeatures],
    sampler: str = "proportional",
    batch_size: int = 32,
    seed: int = 0,
    **sampler_options,
) -> DataLoader:
    """A loader of one epoch of mixed-task batches drawn by a camtl sampler (``camtl.training.sampling``).

    MT-Uncertainty's pools need the Trainer's selection step (``camtl.training``): use run.py for it.
    """
    datasets = [TaskDataset(features, model.task_index(task)) for task, features in train.items()]
    batches = build_sampler(sampler, [len(f) for f in train.values()], batch_size, seed, **sampler_options)
    return DataLoader(ConcatDataset(datasets), batch_sampler=batches, collate_fn=collator(tokenizer))


def evaluate(model: CaMtlModel, tokenizer, dev: dict[str, TaskFeatures], batch_size: int = 64) -> dict:
    """Every dev set's metrics and the averages (as ``eval_results.json``)."""
    with torch.inference_mode():
        return evaluate_tasks(model, dev, collator(tokenizer, evaluation=True), batch_size)
