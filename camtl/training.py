"""Multi-task training on top of the HF Trainer.

What is CA-MTL's own lives here: batches come from a task sampler (camtl.sampling); with
MT-Uncertainty each step scores a pool of candidates without gradients and trains on the most
uncertain ones; evaluation covers every task's dev split and keeps ONE model-selection rule
(the GLUE average); the task mix is logged. Optimisation, schedules, mixed precision,
checkpoints, distributed training and logging integrations are the Trainer's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, DataLoader
from transformers import Trainer, TrainerState
from transformers.trainer import TRAINER_STATE_NAME

from camtl.checkpoints import (
    complete_checkpoint,
    new_run_id,
    prepare_staging,
    rotate,
    save_failure,
    staging_dir,
)
from camtl.collation import MultiTaskCollator, select_examples, sequence_lengths
from camtl.errors import TrainingDiverged
from camtl.evaluation import evaluate_tasks
from camtl.features import TaskDataset, TaskFeatures
from camtl.metrics import AVERAGES, selection_score
from camtl.precision import autocast
from camtl.run_settings import SETTINGS_FILE, CurrentCadence
from camtl.sampling import TaskSampler, regression_uncertainty, select_most_uncertain
from camtl.schedule import scheduler

logger = logging.getLogger(__name__)

TOKEN_FIELDS = {"input_ids", "token_type_ids", "attention_mask"}


def _one_sequence_each(batch: dict) -> bool:
    """Sequence-level tasks only: a batch the CPU path can cut into length-sorted chunks."""
    return not {"sequence_owner", "mlm_positions", "token_labels"} & batch.keys()


def sampling_state_file(rank: int) -> str:
    return "sampling_state.pt" if rank == 0 else f"sampling_state_rank{rank}.pt"


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


def mixed_precision(args, device: torch.device) -> contextlib.AbstractContextManager:
    """The training step's autocast for forwards outside it (MT-U scoring, evaluation, prediction): the
    Trainer's own context manager is a no-op there in transformers 5. ``--precision`` has set ``bf16`` or
    ``fp16`` (camtl.arguments), so plain TrainingArguments work too."""
    return autocast("bf16" if args.bf16 else "fp16" if args.fp16 else "fp32", device.type)


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


class CaMtlTrainer(Trainer):
    """HF Trainer with task-sampled batches, MT-Uncertainty selection and GLUE evaluation."""

    def __init__(
        self,
        *args,
        train_sets: dict[str, TaskFeatures] | None = None,
        dev_sets: dict[str, TaskFeatures] | None = None,
        task_sampler: TaskSampler | None = None,
        collator: MultiTaskCollator,
        eval_collator: MultiTaskCollator | None = None,
        run_id: str | None = None,
        run_settings: dict | None = None,
        **kwargs,
    ):
        # eval_dataset only satisfies the Trainer's checks: evaluate() below reads self.dev_sets.
        super().__init__(*args, data_collator=collator, eval_dataset=dev_sets or None, **kwargs)
        self.collator = collator
        self.eval_collator = eval_collator or collator
        self.dev_sets = dev_sets or {}
        self.task_sampler = task_sampler
        self.evaluations: list[dict] = []
        self.divergence_watch = DivergenceWatch(len(self.model.config.tasks))
        self.run_id = run_id or new_run_id()
        self.run_settings = run_settings or {}
        self.add_callback(CurrentCadence)
        if train_sets:
            datasets = [TaskDataset(f, self.model.task_index(name)) for name, f in train_sets.items()]
            self.train_dataset = ConcatDataset(datasets)
            self.usage = TaskUsage(list(train_sets), [len(f) for f in train_sets.values()])

    def get_train_dataloader(self) -> DataLoader:
        loader = DataLoader(
            self.train_dataset,
            batch_sampler=self.task_sampler,
            collate_fn=self.collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
        )
        return self.accelerator.prepare(loader)

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        """The Trainer's optimizer, with the task heads in parameter groups of their own at
        ``head_lr_multiplier`` x the learning rate (the same weight-decay split, the same optimizer)."""
        optimizer = super().create_optimizer(model)
        multiplier = self.args.head_lr_multiplier
        if multiplier == 1.0:
            return optimizer
        heads = {id(p) for p in self.accelerator.unwrap_model(model or self.model).heads.parameters()}
        groups = []
        for group in optimizer.param_groups:
            for is_head in (False, True):
                params = [p for p in group["params"] if (id(p) in heads) == is_head]
                if params:
                    lr = group["lr"] * (multiplier if is_head else 1.0)
                    groups.append({**group, "params": params, "lr": lr})
        optimizer.param_groups.clear()  # no step taken yet: there is no optimizer state to move
        for group in groups:
            optimizer.add_param_group(group)
        return optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None:
            self.lr_scheduler = scheduler(self.args, optimizer or self.optimizer, num_training_steps)
            self._created_lr_scheduler = True
        return self.lr_scheduler

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        example_index = inputs.pop("example_index")
        inputs.pop("word_starts", None)  # read by prediction only
        if self.task_sampler is not None and self.task_sampler.scores_candidates:
            inputs, example_index = self.select_uncertain_candidates(model, inputs, example_index)
        self.usage.record(inputs["task_ids"], example_index)
        outputs = model(**inputs)
        # The fp16 grad scaler skips non-finite steps itself; otherwise a NaN would silently ruin the weights.
        if not self.args.fp16:
            self.divergence_watch.observe(outputs.loss, inputs["task_ids"], self.state.global_step + 1)
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def stop_if_diverged(self) -> None:
        """Raise TrainingDiverged naming the first step whose loss was not finite (reads the device)."""
        found = self.divergence_watch.first_divergence()
        if found is None:
            return
        step, loss, task_ids = found
        tasks = sorted(self.model.config.tasks[t] for t in task_ids)
        raise TrainingDiverged(
            f"the loss is {loss} at step {step} on a batch of {', '.join(tasks)}:"
            " lower --learning_rate or raise --warmup_proportion; earlier checkpoints are intact"
        )

    def select_uncertain_candidates(
        self, model, pool: dict, example_index: torch.Tensor
    ) -> tuple[dict, torch.Tensor]:
        """Score the pool with the current model (no gradients) and keep the most uncertain examples.

        On a CUDA device the T x b candidates are scored in one forward, without a host sync. On the CPU
        they are scored in T length-sorted chunks of b, each trimmed to its own longest example, so that
        short-sentence tasks do not pay for the padding of long ones (reading the lengths costs nothing
        there). Regression candidates get ``regression_uncertainty``, everything else its entropy.
        """
        started = time.perf_counter()
        scorer = self.accelerator.unwrap_model(model)
        heads = scorer.heads
        task_ids = pool["task_ids"]
        entropy, prediction = self._score_pool(scorer, pool)
        error = regression_uncertainty(prediction, pool["labels"].float(), task_ids, heads.label_range)
        uncertainty = torch.where(heads.is_regression[task_ids], error, entropy)
        keep = select_most_uncertain(
            uncertainty, task_ids, len(heads.num_labels), self.task_sampler.selected_per_step
        )
        selected = select_examples(pool, keep)
        if selected["input_ids"].device.type == "cpu" and _one_sequence_each(pool):
            longest = int(sequence_lengths(selected).max())
            for key in TOKEN_FIELDS & selected.keys():
                selected[key] = selected[key][:, :longest]
        self.usage.selection_seconds += time.perf_counter() - started
        return selected, example_index[keep]

    def _score_pool(self, scorer, pool: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(entropy, first logit) of every candidate, fp32, in the sampler's scoring mode."""
        was_training = scorer.training
        scorer.train(self.task_sampler.scoring_mode == "train")
        with torch.no_grad(), mixed_precision(self.args, pool["input_ids"].device):
            if pool["input_ids"].device.type != "cpu" or not _one_sequence_each(pool):
                output = scorer(**{key: value for key, value in pool.items() if key != "labels"})
                entropy, prediction = output.entropy, output.logits[:, 0]
            else:
                entropy, prediction = self._score_in_chunks(scorer, pool)
        scorer.train(was_training)
        return entropy.float(), prediction.float()

    def _score_in_chunks(self, scorer, pool: dict) -> tuple[torch.Tensor, torch.Tensor]:
        chunk = self.task_sampler.selected_per_step
        lengths = sequence_lengths(pool)
        order = torch.argsort(lengths, descending=True)
        entropy = torch.empty(len(order))
        prediction = torch.empty(len(order))
        for start, length in zip(range(0, len(order), chunk), lengths[order[::chunk]].tolist(), strict=True):
            rows = order[start : start + chunk]
            inputs = {key: pool[key][rows, :length] for key in TOKEN_FIELDS & pool.keys()}
            output = scorer(**inputs, task_ids=pool["task_ids"][rows])
            entropy[rows] = output.entropy.float()
            prediction[rows] = output.logits[:, 0].float()
        return entropy, prediction

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        self.stop_if_diverged()  # at logging steps: the one place training reads the loss on the host
        if "loss" in logs and hasattr(self, "usage"):
            logs.update(self.sampling_summary())
        super().log(logs, start_time)

    def sampling_summary(self) -> dict[str, float]:
        """Task-usage counters summed over all ranks (a collective: every rank must call it)."""
        return self.usage.summary(lambda t: self.accelerator.reduce(t, "sum"))

    def evaluate(
        self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        """Every dev set, metrics per task and the GLUE average; the best step is chosen by that average."""
        results = evaluate_tasks(
            self.model,
            self.dev_sets,
            self.eval_collator,
            self.args.per_device_eval_batch_size,
            autocast=lambda: mixed_precision(self.args, self.model.device),
        )
        record = {"step": self.state.global_step, "results": results}
        self.evaluations.append(record)
        metrics = {
            f"{metric_key_prefix}_{key}": results[key] for key in AVERAGES if results.get(key) is not None
        }
        for task, values in results.items():
            if isinstance(values, dict):
                metrics.update(
                    {  # an undefined metric (None) is no point on a curve: left out of the logs
                        f"{metric_key_prefix}_{task}_{name}": value
                        for name, value in values.items()
                        if value is not None
                    }
                )
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        if self.is_world_process_zero():
            logger.info(
                "evaluation at step %d: selection score %.4f",
                self.state.global_step,
                selection_score(results),
            )
        return metrics

    def best_evaluation(self) -> dict | None:
        """The evaluation with the highest selection score (the one rule), earliest on ties: the average over
        all tasks, which is the GLUE average (without WNLI) for GLUE tasks alone."""
        return max(self.evaluations, key=lambda e: selection_score(e["results"]), default=None)

    def _get_output_dir(self, trial) -> str:
        # While a checkpoint is written, the Trainer's output goes into its temporary folder.
        staging = getattr(self, "_staging", None)
        return str(staging) if staging is not None else super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial):
        """The Trainer's checkpoint plus camtl's counters and run settings, written under a temporary name
        and renamed when complete (camtl.checkpoints): ``checkpoint-N`` is whole or absent."""
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

    def _save_camtl_state(self, checkpoint: Path) -> None:
        if hasattr(self, "usage"):  # every rank keeps its own counters
            torch.save(self.usage.state_dict(), checkpoint / sampling_state_file(self.args.process_index))
        if self.is_world_process_zero():
            (checkpoint / "evaluations.json").write_text(json.dumps(self.evaluations, indent=2))
            (checkpoint / SETTINGS_FILE).write_text(json.dumps(self.run_settings, indent=2))

    def train_or_restore(self, resume: str | None) -> None:
        """Train, resuming from ``resume`` when given. A checkpoint saved at the last step is only loaded:
        the Trainer would run one more step on it (at learning rate 0, but counted by the sampler)."""
        state_file = Path(resume) / TRAINER_STATE_NAME if resume else None
        state = TrainerState.load_from_json(str(state_file)) if state_file else None
        if state is None or state.global_step < state.max_steps:
            with _without_special_token_notice():
                self.train(resume_from_checkpoint=resume)
            return
        self._load_from_checkpoint(resume)
        self.state = state

    def load_sampling_state(self, checkpoint: str) -> None:
        """Restore the task-usage counters and evaluation history saved with a checkpoint."""
        state_file = Path(checkpoint) / sampling_state_file(self.args.process_index)
        if state_file.exists():
            self.usage.load_state_dict(torch.load(state_file, weights_only=True))
        history = Path(checkpoint) / "evaluations.json"
        if history.exists():
            self.evaluations = json.loads(history.read_text())
