"""SIGINT and SIGTERM: one line and the conventional exit codes (130, 143), never a traceback.

SIGINT (Ctrl-C) stops at once. SIGTERM, what a cluster sends before it pre-empts a job, stops at once
outside training; during training the current step is finished, a checkpoint is saved and training
stops, so that ``--resume_from_checkpoint latest`` continues exactly where it stopped.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import torch
from transformers import TrainerCallback

from camtl.errors import EXIT_SIGINT, EXIT_SIGTERM, Stopped
from camtl.training.checkpoints import last_good, run_id_of

logger = logging.getLogger(__name__)


class GracefulStop(TrainerCallback):
    """Installs the handlers; as a Trainer callback, turns a SIGTERM during training into save-and-stop."""

    def __init__(self) -> None:
        self.requested = False
        self.training = False
        self.output_dir: Path | None = None
        self.world_size = 1

    def install(self) -> GracefulStop:
        signal.signal(signal.SIGINT, self._on_sigint)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def _where(self) -> str:
        """Where the run can continue from, for the last line."""
        if self.output_dir is None:
            return ""
        good = last_good(self.output_dir, run_id_of(self.output_dir), self.world_size)
        if good is None:
            return f": no checkpoint of this run in {self.output_dir} yet"
        return f": {good} is the newest complete checkpoint: continue with --resume_from_checkpoint latest"

    def _on_sigint(self, signum, frame) -> None:
        raise Stopped(f"interrupted (SIGINT){self._where()}", EXIT_SIGINT)

    def _on_sigterm(self, signum, frame) -> None:
        if not self.training:
            raise Stopped(f"terminated (SIGTERM){self._where()}", EXIT_SIGTERM)
        self.requested = (
            True  # acted on at the end of the step; a handler must not log (it may hold the lock)
        )

    def on_train_begin(self, args, state, control, **kwargs):
        self.training, self.output_dir, self.world_size = True, Path(args.output_dir), args.world_size

    def on_step_end(self, args, state, control, **kwargs):
        if args.world_size > 1 and torch.distributed.is_initialized():
            # Every rank must stop at the same step, or the next collective waits forever.
            flag = torch.tensor([float(self.requested)], device=args.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            self.requested = bool(flag.item())
        if self.requested:
            logger.warning("SIGTERM: saving a checkpoint after step %d, then stopping", state.global_step)
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self.training = False

    def raise_if_stopped(self) -> None:
        """After training: a SIGTERM stops the run here, after its checkpoint was saved."""
        if self.requested:
            raise Stopped(f"terminated (SIGTERM) during training{self._where()}", EXIT_SIGTERM)
