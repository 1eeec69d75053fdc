"""Multi-task training on top of the HF Trainer.

What is CA-MTL's own lives here: batches come from a task sampler (camtl.training.sampling); with
MT-Uncertainty each step scores a pool of candidates without gradients and trains on the most
uncertain ones; evaluation covers every task's dev split and keeps ONE model-selection rule
(the GLUE average); the task mix is logged. Optimisation, schedules, mixed precision,
checkpoints, distributed training and logging integrations are the Trainer's.

The class is split along its jobs: this module holds the batches, the optimizer's groups, the loss and
evaluation; MT-Uncertainty's candidate selection is camtl.training.uncertainty's, saving and restoring
camtl.training.saving's, the counters (TaskUsage, DivergenceWatch) camtl.training.counters'.
"""

from __future__ import annotations

import logging

import torch
from torch.utils.data import ConcatDataset, DataLoader
from transformers import Trainer

from camtl.data.collation import MultiTaskCollator
from camtl.data.features import TaskDataset, TaskFeatures
from camtl.errors import TrainingDiverged
from camtl.training.checkpoints import new_run_id
from camtl.training.counters import DivergenceWatch, TaskUsage
from camtl.training.evaluation import evaluate_tasks
from camtl.training.metrics import AVERAGES, selection_score
from camtl.training.precision import mixed_precision
from camtl.training.run_settings import CurrentCadence
from camtl.training.sampling import TaskSampler
from camtl.training.saving import CheckpointSaving
from camtl.training.schedule import scheduler
from camtl.training.uncertainty import UncertaintySelection

logger = logging.getLogger(__name__)


class CaMtlTrainer(UncertaintySelection, CheckpointSaving, Trainer):
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
