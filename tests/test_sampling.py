import math
from collections import Counter

import pytest
import torch

from camtl.errors import UsageError
from camtl.training.arguments import DataArguments
from camtl.training.sampling import SAMPLERS, build_sampler, regression_uncertainty, select_most_uncertain

SIZES = [300, 60, 1200]  # three tasks of very different sizes


def task_of(index: int) -> int:
    return 0 if index < 300 else 1 if index < 360 else 2


def epoch_task_counts(name: str, epochs: int = 1, **kwargs) -> Counter:
    sampler = build_sampler(name, SIZES, 16, seed=3, **kwargs)
    counts = Counter()
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for batch in sampler:
            counts.update(task_of(i) for i in batch)
    return counts


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_yields_full_batches_of_valid_indices_and_is_deterministic(name):
    sampler = build_sampler(name, SIZES, 16, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert all(len(b) == sampler.batch_size for b in batches)
    assert all(0 <= i < sum(SIZES) for b in batches for i in b)
    assert batches == list(build_sampler(name, SIZES, 16, seed=1))
    sampler.set_epoch(1)
    assert list(sampler) != batches


def test_proportional_covers_every_example_once_per_epoch():
    batches = list(build_sampler("proportional", SIZES, 16, seed=0))
    flat = [i for b in batches for i in b]
    assert set(flat) == set(range(sum(SIZES)))
    assert len(flat) - sum(SIZES) < 16  # only the wrapped tail repeats


def test_sequential_runs_one_task_after_another():
    batches = list(build_sampler("sequential", SIZES, 16, seed=0))
    tasks = [task_of(b[0]) for b in batches]
    assert all(len({task_of(i) for i in b}) == 1 for b in batches)
    assert tasks == sorted(tasks)
    assert Counter(tasks) == {0: 19, 1: 4, 2: 75}


def test_uniform_draws_the_same_number_from_every_task():
    counts = epoch_task_counts("uniform", percent_of_max_data_size=0.5)
    per_task = 600  # half of the largest task
    assert all(abs(counts[t] - per_task) <= 16 for t in range(3))


def test_temperature_matches_n_to_the_one_over_t():
    counts = epoch_task_counts("temperature", epochs=20, temperature=2.0)
    weights = torch.tensor(SIZES, dtype=torch.float64) ** 0.5
    expected = weights / weights.sum()
    observed = torch.tensor([counts[t] for t in range(3)], dtype=torch.float64)
    observed /= observed.sum()
    assert torch.allclose(observed, expected, atol=0.01)


def test_sampling_weights_multiply_a_tasks_share():
    counts = epoch_task_counts("temperature", epochs=20, temperature=2.0, sampling_weights=[1.0, 3.0, 1.0])
    weights = torch.tensor(SIZES, dtype=torch.float64) ** 0.5 * torch.tensor([1.0, 3.0, 1.0])
    observed = torch.tensor([counts[t] for t in range(3)], dtype=torch.float64)
    assert torch.allclose(observed / observed.sum(), weights / weights.sum(), atol=0.01)
    plain = epoch_task_counts("temperature", epochs=20, temperature=2.0)
    assert counts[1] / sum(counts.values()) > 1.5 * plain[1] / sum(plain.values())


@pytest.mark.parametrize(
    ("name", "weights", "message"),
    [
        ("temperature", [1.0, 3.0], "one finite weight > 0 per task"),  # a list that would broadcast
        ("temperature", [1.0, 0.0, 1.0], "one finite weight > 0 per task"),
        ("temperature", [1.0, float("inf"), 1.0], "one finite weight > 0 per task"),
        ("proportional", [1.0, 3.0, 1.0], "change nothing with proportional sampling"),
    ],
)
def test_sampling_weights_the_sampler_cannot_use_are_refused(name, weights, message):
    with pytest.raises(UsageError, match=message):
        build_sampler(name, SIZES, 16, seed=0, sampling_weights=weights)


def test_mt_uncertainty_pools_hold_one_batch_per_task():
    sampler = build_sampler("mt-uncertainty", SIZES, 16, seed=0)
    # The authors' epoch: max over tasks of its batch count (ceil(1200 / 16) = 75) x T x percent.
    assert len(sampler) == 75 * 3
    for pool in sampler:
        assert [task_of(i) for i in pool] == [0] * 16 + [1] * 16 + [2] * 16
    uniform = build_sampler(
        "mt-uncertainty", SIZES, 16, seed=0, uniform_mt_sampling=True, percent_of_max_data_size=0.5
    )
    assert len(uniform) == int(0.5 * 75 * 3 / 16)  # with --uniform_mt_sampling, also divided by b


def test_selection_keeps_the_highest_weighted_entropies():
    entropy = torch.tensor([0.9, 0.1, 0.6, 0.5, 0.2, 0.3])
    task_ids = torch.tensor([0, 0, 1, 1, 2, 2])
    # task means 0.5, 0.55, 0.25 -> weights 0.909, 1, 0.4545; scores .818 .091 .6 .5 .091 .136
    assert select_most_uncertain(entropy, task_ids, 3, 2).tolist() == [0, 2]
    scores = entropy * torch.tensor([0.5, 0.5, 0.55, 0.55, 0.25, 0.25]) / 0.55
    assert sorted(select_most_uncertain(entropy, task_ids, 3, 4).tolist()) == sorted(
        scores.topk(4).indices.tolist()
    )


def test_selection_handles_all_zero_entropy():
    keep = select_most_uncertain(torch.zeros(6), torch.tensor([0, 0, 1, 1, 2, 2]), 3, 3)
    assert len(set(keep.tolist())) == 3


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, "proportional"),
        ({"use_mt_uncertainty": True}, "mt-uncertainty"),
        ({"uniform_mt_sampling": True}, "uniform"),
        ({"use_mt_uncertainty": True, "uniform_mt_sampling": True}, "mt-uncertainty"),
        ({"task_sampling": "temperature"}, "temperature"),
        ({"task_sampling": "mt-uncertainty", "uniform_mt_sampling": True}, "mt-uncertainty"),
    ],
)
def test_seed_flags_map_onto_one_sampler(kwargs, expected):
    assert DataArguments(data_dir="x", **kwargs).resolve_sampler() == expected


def test_conflicting_sampler_flags_are_refused():
    with pytest.raises(UsageError, match="conflicts with --use_mt_uncertainty"):
        DataArguments(data_dir="x", task_sampling="sequential", use_mt_uncertainty=True).resolve_sampler()
    with pytest.raises(UsageError, match="unknown --task_sampling"):
        DataArguments(data_dir="x", task_sampling="random").resolve_sampler()
    with pytest.raises(UsageError, match="batch size must be positive"):
        build_sampler("proportional", SIZES, 0, seed=0)


def test_grouping_by_length_cuts_padding_but_keeps_each_epochs_examples():
    lengths = torch.randint(5, 129, (sum(SIZES),), generator=torch.Generator().manual_seed(0))
    plain = list(build_sampler("proportional", SIZES, 16, seed=4))
    grouped = list(build_sampler("proportional", SIZES, 16, seed=4).grouped_by_length(lengths))
    assert sorted(i for b in grouped for i in b) == sorted(i for b in plain for i in b)

    def mean_padded_length(batches):
        return sum(int(lengths[b].max()) for b in batches) / len(batches)

    assert mean_padded_length(grouped) < 0.8 * mean_padded_length(plain)
    spreads = [int(lengths[b].max() - lengths[b].min()) for b in grouped]
    assert sorted(spreads)[len(spreads) // 2] <= 10  # most batches hold examples of similar length


def test_regression_uncertainty_is_the_tasks_rmse_relative_to_the_label_spread():
    label_range = torch.tensor([[0.0, 5.0], [0.0, 1.0]])
    spread = 5 / math.sqrt(12)
    # Task 0: errors 1, 0, 2 (RMSE sqrt(5/3)); task 1: no error. Every candidate gets its task's value.
    u = regression_uncertainty(
        torch.tensor([1.0, 2.0, 0.3, 3.0]),
        torch.tensor([2.0, 2.0, 0.3, 5.0]),
        torch.tensor([0, 0, 1, 0]),
        label_range,
    )
    assert u.tolist() == pytest.approx([math.sqrt(5 / 3) / spread] * 2 + [0.0] + [math.sqrt(5 / 3) / spread])

    # A model that only knows the middle of the range scores 1, as a chance-level classifier's entropy
    # does; a good one scores low; an untrained head far off the labels is capped at 1.
    target = torch.linspace(0, 5, 101)
    task_ids = torch.zeros(101, dtype=torch.long)
    middle = regression_uncertainty(torch.full((101,), 2.5), target, task_ids, label_range)
    good = regression_uncertainty(target + 0.5 * torch.randn(101), target, task_ids, label_range)
    untrained = regression_uncertainty(torch.full((101,), -3.0), target, task_ids, label_range)
    assert middle.unique().tolist() == [1.0]
    assert float(good[0]) < 0.5
    assert untrained.unique().tolist() == [1.0]
