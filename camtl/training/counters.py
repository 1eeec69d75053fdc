"""The trainer's counters: examples drawn and used per task (TaskUsage), and the first step whose loss was
not finite (DivergenceWatch). Both stay on the device; the trainer reads them at logging steps and saves."""

from __future__ import annotations

from collections.abc import Callable

import torch


class TaskUsage:
    """Examples drawn per task and which distinct examples were trained on, kept on the device."""

    def __init__(self, task_names: list[str], task_sizes: list[int]):
        self.task_names = task_names
        self.task_sizes = torch.tensor(task_sizes)
        self.offsets = torch.tensor([0, *task_sizes]).cumsum(0)[:-1]
        self.drawn = torch.zeros(len(task_sizes), dtype=torch.long)
        self.seen = torch.zeros(sum(task_sizes), dtype=torch.bool)
        self.selection_seconds = 0.0

    def to(self, device: torch.device) -> TaskUsage:
        self.offsets, self.drawn, self.seen = (
            self.offsets.to(device),
            self.drawn.to(device),
            self.seen.to(device),
        )
        return self

    def record(self, task_ids: torch.Tensor, example_index: torch.Tensor) -> None:
        if self.drawn.device != task_ids.device:
            self.to(task_ids.device)
        self.drawn.index_add_(0, task_ids, torch.ones_like(task_ids))  # bincount would sync to the host
        self.seen[self.offsets[task_ids] + example_index] = True

    def summary(self, reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t) -> dict[str, float]:
        """Counters for logging; ``reduce`` sums a tensor over ranks in distributed training."""
        drawn = reduce(self.drawn.clone()).cpu()
        seen = reduce(self.seen.int()).cpu() > 0
        task_of_example = torch.repeat_interleave(torch.arange(len(drawn)), self.task_sizes)
        seen_per_task = torch.zeros(len(drawn), dtype=torch.long).index_add_(0, task_of_example, seen.long())
        logs = {}
        for t, name in enumerate(self.task_names):
            logs[f"sampling/{name}/examples_drawn"] = int(drawn[t])
            logs[f"sampling/{name}/percent_used"] = round(
                100.0 * int(seen_per_task[t]) / int(self.task_sizes[t]), 2
            )
        logs["sampling/percent_used_all"] = round(100.0 * int(seen.sum()) / len(seen), 2)
        logs["sampling/selection_seconds"] = round(self.selection_seconds, 3)
        return logs

    def state_dict(self) -> dict:
        return {
            "drawn": self.drawn.cpu(),
            "seen": self.seen.cpu(),
            "selection_seconds": self.selection_seconds,
        }

    def load_state_dict(self, state: dict) -> None:
        self.drawn, self.seen = state["drawn"].to(self.drawn.device), state["seen"].to(self.seen.device)
        self.selection_seconds = float(state["selection_seconds"])


class DivergenceWatch:
    """Notes on the device the first training step whose loss is not finite, and the tasks of its batch.

    Checking ``isfinite(loss)`` on the host every step would make every step wait for the device; the
    trainer reads this at logging steps and before each save instead, so no checkpoint holds diverged
    weights and the run stops within ``--logging_steps`` of the step that diverged.
    """

    def __init__(self, num_tasks: int):
        self.num_tasks = num_tasks
        self.step: torch.Tensor | None = None  # -1 until a loss is not finite
        self.loss: torch.Tensor | None = None
        self.tasks: torch.Tensor | None = None

    def observe(self, loss: torch.Tensor, task_ids: torch.Tensor, step: int) -> None:
        loss = loss.detach().float()
        if self.step is None:
            self.step = torch.full((), -1, device=loss.device)
            self.loss = torch.zeros((), device=loss.device)
            self.tasks = torch.zeros(self.num_tasks, dtype=torch.bool, device=loss.device)
        first = ~torch.isfinite(loss) & (self.step < 0)
        in_batch = torch.zeros(self.num_tasks, device=loss.device).index_add_(
            0, task_ids, loss.new_ones(len(task_ids))
        )
        self.step = torch.where(first, step, self.step)
        self.loss = torch.where(first, loss, self.loss)
        self.tasks = torch.where(first, in_batch > 0, self.tasks)

    def first_divergence(self) -> tuple[int, float, list[int]] | None:
        """(step, loss, task ids) of the first non-finite loss, or None; reads the device (a host sync)."""
        if self.step is None or int(self.step) < 0:
            return None
        return int(self.step), float(self.loss), self.tasks.nonzero().squeeze(1).tolist()
