"""Task samplers: which training examples make up each batch.

Every sampler is a batch sampler over the concatenation of the task datasets (global index =
task offset + index within the task), deterministic given ``seed`` and the epoch set by
``set_epoch``, and yields full batches only (the last batch of an epoch wraps around), so that
``accelerate`` can shard batches across ranks and an interrupted run replays them exactly.

=================  =======================================================================
proportional       shuffle the concatenation of all tasks: tasks appear in proportion to size
sequential         one task after another (each task shuffled): the reference README's wording
uniform            the same number of examples from every task: ``percent_of_max_data_size``
                   of the largest task, small tasks repeated
temperature        task t drawn with probability proportional to w_t * n_t ** (1 / temperature)
mt-uncertainty     each batch is a candidate pool of ``batch_size`` examples from EVERY task;
                   the trainer keeps the ``batch_size`` most uncertain (paper, Algorithm 1)
=================  =======================================================================
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from camtl.errors import UsageError

LENGTH_GROUP_WINDOW = 50  # batches per window sorted by length when grouping by length
SAMPLERS = ("proportional", "sequential", "uniform", "temperature", "mt-uncertainty")


class TaskSampler(Sampler[list[int]]):
    """Base class: a batch sampler over tasks of sizes ``task_sizes`` (global indices)."""

    scores_candidates = False  # True when each yielded batch is a pool for uncertainty selection

    def __init__(self, task_sizes: list[int], batch_size: int, seed: int):
        self.task_sizes = list(task_sizes)
        self.offsets = [sum(task_sizes[:t]) for t in range(len(task_sizes))]
        self.batch_size = batch_size
        self.drop_last = False
        self.seed = seed
        self.epoch = 0
        self.lengths: torch.Tensor | None = None

    def grouped_by_length(self, lengths: torch.Tensor) -> TaskSampler:
        """Batch examples of similar length together (``--train_sampling_strategy group_by_length``).

        The epoch's order is cut into windows of ``LENGTH_GROUP_WINDOW`` batches, each window sorted by
        length, and the resulting batches shuffled: the task mix of an epoch is unchanged, padding shrinks.
        MT-Uncertainty pools are not affected: their scoring already runs in length-sorted chunks.
        """
        self.lengths = lengths
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)

    def _task_stream(self, task: int, count: int, generator: torch.Generator) -> torch.Tensor:
        """``count`` global indices of one task: whole shuffled passes over it, as many as needed."""
        n = self.task_sizes[task]
        passes = [torch.randperm(n, generator=generator) for _ in range(math.ceil(count / n))]
        return torch.cat(passes)[:count] + self.offsets[task]

    def _batches(self, order: torch.Tensor, generator: torch.Generator) -> list[list[int]]:
        """Cut an epoch's example order into full batches, wrapping the last one around."""
        num_batches = math.ceil(len(order) / self.batch_size)
        padded = order.repeat(math.ceil(num_batches * self.batch_size / len(order)))[
            : num_batches * self.batch_size
        ]
        if self.lengths is None:
            return padded.view(num_batches, self.batch_size).tolist()
        windows = padded.split(self.batch_size * LENGTH_GROUP_WINDOW)
        grouped = torch.cat(
            [w[torch.argsort(self.lengths[w], descending=True, stable=True)] for w in windows]
        )
        batches = grouped.view(num_batches, self.batch_size)
        return batches[torch.randperm(num_batches, generator=generator)].tolist()

    def epoch_order(self, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def __iter__(self) -> Iterator[list[int]]:
        generator = self._generator()
        yield from self._batches(self.epoch_order(generator), generator)

    def __len__(self) -> int:
        return math.ceil(self.examples_per_epoch / self.batch_size)

    @property
    def examples_per_epoch(self) -> int:
        return sum(self.task_sizes)


class ProportionalSampler(TaskSampler):
    def epoch_order(self, generator: torch.Generator) -> torch.Tensor:
        return torch.randperm(sum(self.task_sizes), generator=generator)


class SequentialSampler(TaskSampler):
    def __iter__(self) -> Iterator[list[int]]:
        # Batches never straddle two tasks: each task is cut into its own full batches.
        generator = self._generator()
        for task, n in enumerate(self.task_sizes):
            yield from self._batches(self._task_stream(task, n, generator), generator)

    def __len__(self) -> int:
        return sum(math.ceil(n / self.batch_size) for n in self.task_sizes)


class UniformSampler(TaskSampler):
    def __init__(
        self, task_sizes: list[int], batch_size: int, seed: int, percent_of_max_data_size: float = 1.0
    ):
        super().__init__(task_sizes, batch_size, seed)
        self.per_task = max(1, round(max(task_sizes) * percent_of_max_data_size))

    @property
    def examples_per_epoch(self) -> int:
        return self.per_task * len(self.task_sizes)

    def epoch_order(self, generator: torch.Generator) -> torch.Tensor:
        streams = torch.cat(
            [self._task_stream(t, self.per_task, generator) for t in range(len(self.task_sizes))]
        )
        return streams[torch.randperm(len(streams), generator=generator)]


class TemperatureSampler(TaskSampler):
    """Task t drawn with probability p_t = w_t n_t^(1/T) / sum_s w_s n_s^(1/T): T = 1 is proportional,
    large T uniform; the weights w_t (``--sampling_weights``, default 1) give a task a larger share."""

    def __init__(
        self, task_sizes: list[int], batch_size: int, seed: int, temperature: float = 2.0,
        sampling_weights: Sequence[float] | None = None,
    ):  # fmt: skip
        super().__init__(task_sizes, batch_size, seed)
        weights = torch.tensor(task_sizes, dtype=torch.float64) ** (1.0 / temperature)
        if sampling_weights is not None:
            given = torch.tensor(sampling_weights, dtype=torch.float64)
            if given.shape != weights.shape or not (torch.isfinite(given) & (given > 0)).all():
                raise UsageError(
                    f"sampling weights {list(sampling_weights)}: give one finite weight > 0 per task"
                    f" ({len(task_sizes)} tasks)"
                )
            weights = weights * given
        self.task_probabilities = weights / weights.sum()

    def epoch_order(self, generator: torch.Generator) -> torch.Tensor:
        draws = torch.multinomial(self.task_probabilities, self.examples_per_epoch, True, generator=generator)
        order = torch.empty(self.examples_per_epoch, dtype=torch.long)
        for task in range(len(self.task_sizes)):
            slots = (draws == task).nonzero().squeeze(1)
            order[slots] = self._task_stream(task, len(slots), generator)
        return order


class MTUncertaintySampler(TaskSampler):
    """Yields pools of ``batch_size`` candidates from every task, task by task, in one list.

    The epoch length is the authors' (``mtl_trainer.py``): max_t(batches of task t) x T x
    percent_of_max_data_size steps, and with ``uniform_epoch`` (``--uniform_mt_sampling``) that divided
    by the batch size. ``scoring_mode`` is the model's mode while it scores a pool: "train" (dropout on,
    as the authors' trainer leaves it) or "eval".
    """

    scores_candidates = True

    def __init__(
        self,
        task_sizes: list[int],
        batch_size: int,
        seed: int,
        uniform_epoch: bool = False,
        percent_of_max_data_size: float = 1.0,
        scoring_mode: str = "train",
    ):
        super().__init__(task_sizes, batch_size, seed)
        self.selected_per_step = batch_size
        self.batch_size = batch_size * len(task_sizes)  # what the data loader yields per step
        self.scoring_mode = scoring_mode
        steps = (
            max(math.ceil(n / batch_size) for n in task_sizes) * len(task_sizes) * percent_of_max_data_size
        )
        self.steps = max(1, int(steps / batch_size if uniform_epoch else steps))

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        generator = self._generator()
        count = self.steps * self.selected_per_step
        streams = [
            self._task_stream(t, count, generator).view(self.steps, -1) for t in range(len(self.task_sizes))
        ]
        yield from torch.cat(streams, dim=1).tolist()


def regression_uncertainty(
    prediction: torch.Tensor, target: torch.Tensor, task_ids: torch.Tensor, label_range: torch.Tensor
) -> torch.Tensor:
    """MT-Uncertainty's stand-in for the normalized entropy of regression candidates (STS-B), in [0, 1]:

        u_i = min(1, RMSE_t / sigma_t),   sigma_t = (high_t - low_t) / sqrt(12),   t = task of candidate i,

    the model's root-mean-square error on the pool's candidates of task t relative to the spread of
    labels over the task's range (the standard deviation of labels spread evenly over it: 1.44 for
    STS-B, whose training labels have 1.5). Like a classifier's normalized entropy it is 1 for a model
    that knows no more than where the labels lie (or less) and falls toward 0 as the task is learned.
    Every candidate of the task gets the task's value: per-candidate errors spread from 0 to the whole
    range while the entropies of a near-chance classifier all sit near 1, so on a per-candidate scale the
    regression task lost every comparison of Algorithm 1. ``label_range`` is (num_tasks, 2); the values
    of classification candidates are meaningless and left for the caller to replace by their entropy.
    """
    num_tasks = label_range.shape[0]
    squared_error = (prediction - target).square()
    totals = torch.zeros(num_tasks, dtype=squared_error.dtype, device=squared_error.device)
    totals.index_add_(0, task_ids, squared_error)
    counts = torch.zeros_like(totals).index_add_(0, task_ids, torch.ones_like(squared_error)).clamp(min=1)
    spread = (label_range[:, 1] - label_range[:, 0]) / math.sqrt(12)
    return ((totals / counts).sqrt() / spread).clamp(max=1.0)[task_ids]


def uncertainty_scores(entropy: torch.Tensor, task_ids: torch.Tensor, num_tasks: int) -> torch.Tensor:
    """Algorithm 1 of the paper, the score of each candidate:

        score_i = H_i * mean_t(H) / max_t' mean_t'(H),   t = task of candidate i,

    where H_i is the candidate's normalized predictive entropy (``regression_uncertainty`` for a
    regression task) and mean_t(H) the mean over the candidates of task t in this pool. Runs on the
    device, without a host sync.
    """
    totals = torch.zeros(num_tasks, dtype=entropy.dtype, device=entropy.device).index_add_(
        0, task_ids, entropy
    )
    counts = torch.zeros_like(totals).index_add_(0, task_ids, torch.ones_like(entropy))
    task_mean = totals / counts.clamp(min=1)
    weight = task_mean / task_mean.max().clamp(min=torch.finfo(entropy.dtype).tiny)
    return entropy * weight[task_ids]


def select_most_uncertain(
    entropy: torch.Tensor, task_ids: torch.Tensor, num_tasks: int, k: int
) -> torch.Tensor:
    """Indices of the ``k`` candidates with the highest ``uncertainty_scores``."""
    return uncertainty_scores(entropy, task_ids, num_tasks).topk(k).indices


def build_sampler(
    name: str,
    task_sizes: list[int],
    batch_size: int,
    seed: int,
    percent_of_max_data_size: float = 1.0,
    temperature: float = 2.0,
    uniform_mt_sampling: bool = False,
    mtu_scoring_mode: str = "train",
    sampling_weights: Sequence[float] | None = None,
) -> TaskSampler:
    """The one place that maps a sampler name (``--task_sampling``) to its class."""
    if batch_size <= 0:
        raise UsageError(f"batch size must be positive, got {batch_size}")
    if min(task_sizes, default=0) <= 0:
        raise UsageError(
            "every training task needs at least one example: check --data_dir and --max_train_samples"
        )
    if sampling_weights is not None and name != "temperature":
        raise UsageError(f"sampling weights change nothing with {name} sampling: use temperature sampling")
    if name == "proportional":
        return ProportionalSampler(task_sizes, batch_size, seed)
    if name == "sequential":
        return SequentialSampler(task_sizes, batch_size, seed)
    if name == "uniform":
        return UniformSampler(task_sizes, batch_size, seed, percent_of_max_data_size)
    if name == "temperature":
        if temperature <= 0:
            raise UsageError(f"--sampling_temperature must be positive, got {temperature}")
        return TemperatureSampler(task_sizes, batch_size, seed, temperature, sampling_weights)
    if name == "mt-uncertainty":
        return MTUncertaintySampler(
            task_sizes, batch_size, seed, uniform_mt_sampling, percent_of_max_data_size, mtu_scoring_mode
        )
    raise UsageError(f"unknown --task_sampling '{name}': choose from {', '.join(SAMPLERS)}")
