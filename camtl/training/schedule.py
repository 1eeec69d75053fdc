"""The learning-rate schedule: transformers' own, with a warmup that never wastes a run's only step."""

from __future__ import annotations

import torch
from transformers import get_scheduler


def warmup_steps(args, num_training_steps: int) -> int:
    """transformers' rule (whole steps as given, a fraction of the steps rounded up), except that a fraction
    giving a single step gives none: a one-step warmup runs its only step at learning rate 0 (so a 1-step
    run with the default 10% would save its initial weights)."""
    steps = args.get_warmup_steps(num_training_steps)
    return 0 if steps == 1 and args.warmup_steps < 1 else steps


def scheduler(args, optimizer: torch.optim.Optimizer, num_training_steps: int):
    return get_scheduler(
        args.lr_scheduler_type,
        optimizer=optimizer,
        num_warmup_steps=warmup_steps(args, num_training_steps),
        num_training_steps=num_training_steps,
        scheduler_specific_kwargs=args.lr_scheduler_kwargs,
    )
