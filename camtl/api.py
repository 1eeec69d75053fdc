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

import inspect
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, DataLoader

from camtl.data.collation import Masking, MultiTaskCollator, model_inputs
from camtl.data.features import TaskDataset, TaskFeatures, load_features
from camtl.data.sources import task_data_dir
from camtl.data.splits import SPLITS
from camtl.errors import UsageError
from camtl.model import CaMtlModel, load_model, load_tokenizer
from camtl.tasks import TASKS, canonical_task_name, evaluation_tasks
from camtl.tasks.plan import plan_tasks
from camtl.training.evaluation import evaluate_tasks
from camtl.training.sampling import SAMPLERS, build_sampler

__all__ = ["build", "collator", "evaluate", "load_split", "load_tasks", "model_inputs", "train_loader"]


def _listed(function: str, argument: str, value: object, example: str, kinds: tuple = (str,)) -> list:
    """``value`` as a non-empty list of ``kinds`` (task names are strings; data folders may be paths):
    one alone is a one-element list (never read letter by letter), a list or tuple is taken as it is,
    anything else, an empty one or one holding anything else is refused."""
    if isinstance(value, kinds):
        return [value]
    if not isinstance(value, (list, tuple)):
        raise UsageError(f"{function}: {argument} must be a list (or one alone), got {type(value).__name__}")
    if not value:
        raise UsageError(f"{function}: {argument} is empty: name at least one, e.g. {argument}={example}")
    wrong = [item for item in value if not isinstance(item, kinds)]
    if wrong:
        names = " or ".join(kind.__name__ for kind in kinds)
        raise UsageError(
            f"{function}: {argument} must hold {names} values, got {wrong[0]!r}: e.g. {argument}={example}"
        )
    return list(value)


def _sizes(function: str, **sizes: object) -> None:
    """Every size given (None: not given) is a positive whole number."""
    for name, value in sizes.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise UsageError(f"{function}: {name} must be a positive whole number, got {value!r}")


def _options(function: str, options: dict, target: Callable, set_here: tuple[str, ...]) -> None:
    """``options`` are keyword arguments of ``target`` that ``function`` passes on (except ``set_here``):
    a misspelt one is named with the ones allowed, not as an internal function's TypeError."""
    allowed = [
        name
        for name, parameter in inspect.signature(target).parameters.items()
        if parameter.default is not inspect.Parameter.empty and name not in set_here
    ]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise UsageError(
            f"{function}: unknown argument {', '.join(unknown)}: choose from {', '.join(allowed)}"
        )


def _features(function: str, argument: str, features: dict, split: str) -> None:
    """``features`` is what ``load_split(tasks, split, ...)`` returns: test features have no labels, so
    training or scoring on them would use a made-up label 0 for every row."""
    if not isinstance(features, dict) or not features:
        raise UsageError(
            f"{function}: {argument} holds no task's features: pass what load_split returns for them"
        )
    for task, values in features.items():
        if not isinstance(values, TaskFeatures):
            raise UsageError(
                f"{function}: {argument}[{task!r}] is a {type(values).__name__}, not a task's features:"
                " pass what load_split returns"
            )
        if values.split == "test":
            raise UsageError(
                f"{function}: {argument}[{task!r}] holds the test split, which has no labels:"
                f" pass load_split(tasks, '{split}', ...)"
            )


def load_tasks(names: str | list[str] | None = None, task_file: str | Path | None = None) -> list[str]:
    """Canonical training task names (one name alone is a one-task list; None: the task file's tasks, or
    all of GLUE without one); a task file's tasks are registered first."""
    if names is not None:
        names = _listed("load_tasks", "names", names, '["rte", "mrpc"]')
    return plan_tasks(names, None if task_file is None else str(task_file), saved={}).trained


def build(
    model_name_or_path: str, tasks: str | list[str] | None, max_seq_length: int = 128, **options
) -> tuple[CaMtlModel, object]:
    """The model (CA-MTL-base|large|mini, a backbone or a checkpoint; CaMtlConfig ``options``), tokenizer.

    ``tasks``: a list of task names or one name alone; None: a checkpoint's own tasks (all GLUE for a
    new model)."""
    if tasks is not None:
        tasks = _listed("build", "tasks", tasks, '["rte"]')
    _sizes("build", max_seq_length=max_seq_length)
    model = load_model(model_name_or_path, tasks, max_seq_length=max_seq_length, **options)
    return model, load_tokenizer(model_name_or_path)


def load_split(
    tasks: str | list[str],
    split: str,
    data_dirs: str | Path | list[str | Path] | None,
    tokenizer,
    max_seq_length: int = 128,
    max_examples: int | None = None,
    cache_dir: str | Path | None = None,
) -> dict[str, TaskFeatures]:
    """Tokenized features of ``split`` (train, dev or test) per task; for "dev", also the tasks the heads
    score (mnli-mm, ...). ``tasks`` and ``data_dirs`` take a list or one alone; ``max_examples`` None: all.
    """
    names = [canonical_task_name(task) for task in _listed("load_split", "tasks", tasks, '["rte"]')]
    if split not in SPLITS:
        alias = " (camtl calls the validation split dev)" if split == "validation" else ""
        raise UsageError(f"load_split: unknown split {split!r}{alias}: choose from {', '.join(SPLITS)}")
    dirs = (
        None
        if data_dirs is None
        else _listed("load_split", "data_dirs", data_dirs, '["../shared/glue"]', kinds=(str, Path))
    )
    _sizes("load_split", max_seq_length=max_seq_length, max_examples=max_examples)
    names = evaluation_tasks(names) if split == "dev" else names
    return {
        task: load_features(
            task_data_dir(task, dirs),
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
    """The collator of mixed batches (masking for masked-LM tasks; fixed masks for evaluation);
    ``options``: pad_to, pad_to_multiple_of, max_length."""
    _options("collator", options, MultiTaskCollator, ("masking", "fixed_masks"))
    _sizes("collator", **options)
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
    """A loader of one epoch of mixed-task batches drawn by a camtl sampler (``camtl.training.sampling``);
    ``sampler_options``: temperature, sampling_weights (temperature sampling), percent_of_max_data_size,
    uniform_mt_sampling, mtu_scoring_mode.

    MT-Uncertainty's pools need the Trainer's selection step (``camtl.training``): use run.py for it.
    """
    _features("train_loader", "train", train, "train")
    _options("train_loader", sampler_options, build_sampler, ())
    _sizes("train_loader", batch_size=batch_size)
    if sampler not in SAMPLERS:
        raise UsageError(f"train_loader: unknown sampler {sampler!r}: choose from {', '.join(SAMPLERS)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise UsageError(f"train_loader: seed must be a whole number in 0..{2**32 - 1}, got {seed!r}")
    datasets = [TaskDataset(features, model.task_index(task)) for task, features in train.items()]
    batches = build_sampler(sampler, [len(f) for f in train.values()], batch_size, seed, **sampler_options)
    return DataLoader(ConcatDataset(datasets), batch_sampler=batches, collate_fn=collator(tokenizer))


def evaluate(model: CaMtlModel, tokenizer, dev: dict[str, TaskFeatures], batch_size: int = 64) -> dict:
    """Every dev set's metrics and the averages (as ``eval_results.json``)."""
    _features("evaluate", "dev", dev, "dev")
    _sizes("evaluate", batch_size=batch_size)
    with torch.inference_mode():
        return evaluate_tasks(model, dev, collator(tokenizer, evaluation=True), batch_size)
