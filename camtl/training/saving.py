"""CaMtlTrainer's saving and restoring: complete-or-absent checkpoints with camtl's own state (task-usage
counters, evaluation history, run settings) beside the Trainer's, and a resume that does not step again."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from pathlib import Path

import torch
from transformers import TrainerState
from transformers.trainer import TRAINER_STATE_NAME

from camtl.model.loading import without_progress_bar
from camtl.training.checkpoints import (
    complete_checkpoint,
    prepare_staging,
    rotate,
    save_failure,
    staging_dir,
)
from camtl.training.run_settings import SETTINGS_FILE


def sampling_state_file(rank: int) -> str:
    return "sampling_state.pt" if rank == 0 else f"sampling_state_rank{rank}.pt"


def _drop_special_token_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("The tokenizer has new PAD/BOS/EOS tokens")


@contextlib.contextmanager
def _without_special_token_notice():
    """Trainer.train copies the tokenizer's PAD/BOS/EOS ids into the model's config and says so: camtl's
    config never reads them (the backbone's own config holds its padding id), so the notice, which asks
    nothing of the user, is dropped while train() runs; every other transformers message stays."""
    trainer_logger = logging.getLogger("transformers.trainer_utils")
    trainer_logger.addFilter(_drop_special_token_notice)
    try:
        yield
    finally:
        trainer_logger.removeFilter(_drop_special_token_notice)


class CheckpointSaving:
    """Mixed into CaMtlTrainer before the HF Trainer, whose ``_save_checkpoint`` it wraps."""

    def _get_output_dir(self, trial) -> str:
        # While a checkpoint is written, the Trainer's output goes into its temporary folder.
        staging = getattr(self, "_staging", None)
        return str(staging) if staging is not None else super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial):
        """The Trainer's checkpoint plus camtl's counters and run settings, written under a temporary name
        and renamed when complete (camtl.training.checkpoints): ``checkpoint-N`` is whole or absent."""
        self.stop_if_diverged()  # never a checkpoint of diverged weights
        run_dir = Path(super()._get_output_dir(trial))
        step = self.state.global_step
        staged = staging_dir(run_dir, step) / f"checkpoint-{step}"
        try:
            if self.is_world_process_zero():
                prepare_staging(run_dir, step)
            self.accelerator.wait_for_everyone()
            self._staging = staged.parent
            super()._save_checkpoint(model, trial)  # its rotation sees only the temporary folder
            self._staging = None
            self._save_camtl_state(staged)
            self.accelerator.wait_for_everyone()  # every rank's files are in before the marker
            if self.is_world_process_zero():
                final = complete_checkpoint(staged, run_dir, self.run_id, step, self.args.world_size)
                rotate(run_dir, self.args.save_total_limit, keep=final)
            self.accelerator.wait_for_everyone()
        except Exception as error:  # a full disk, most often: say so, and which checkpoint is intact
            failure = save_failure(error, run_dir, step, self.run_id, self.args.world_size)
            if failure is error:
                raise
            raise failure from None
        finally:
            self._staging = None
            if self.is_world_process_zero():
                shutil.rmtree(staged.parent, ignore_errors=True)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """The Trainer's model save (into a checkpoint, and the final model) without transformers' "Writing
        model shards" bar, which would print into the middle of the training bar's line."""
        with without_progress_bar():
            super().save_model(output_dir, _internal_call=_internal_call)

    def _save_camtl_state(self, checkpoint: Path) -> None:
        if hasattr(self, "usage"):  # every rank keeps its own counters
            torch.save(self.usage.state_dict(), checkpoint / sampling_state_file(self.args.process_index))
        if self.is_world_process_zero():
            (checkpoint / "evaluations.json").write_text(json.dumps(self.evaluations, indent=2))
            (checkpoint / SETTINGS_FILE).write_text(json.dumps(self.run_settings, indent=2))

    def train_or_restore(self, resume: str | None) -> dict | None:
        """Train, resuming from ``resume`` when given; the Trainer's train metrics (train_runtime, ...).
        A checkpoint saved at the last step is only loaded (None is returned): the Trainer would run one
        more step on it (at learning rate 0, but counted by the sampler)."""
        state_file = Path(resume) / TRAINER_STATE_NAME if resume else None
        state = TrainerState.load_from_json(str(state_file)) if state_file else None
        if state is None or state.global_step < state.max_steps:
            with _without_special_token_notice():
                return self.train(resume_from_checkpoint=resume).metrics
        self._load_from_checkpoint(resume)
        self.state = state
        return None

    def load_sampling_state(self, checkpoint: str) -> None:
        """Restore the task-usage counters and evaluation history saved with a checkpoint."""
        state_file = Path(checkpoint) / sampling_state_file(self.args.process_index)
        if state_file.exists():
            self.usage.load_state_dict(torch.load(state_file, weights_only=True))
        history = Path(checkpoint) / "evaluations.json"
        if history.exists():
            self.evaluations = json.loads(history.read_text())
