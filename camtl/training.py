"""Multi-task training on top of the HF Trainer.

What is CA-MTL's own lives here: batches come from a task sampler (camtl.sampling); with
MT-Uncertainty each step scores a pool of candidates without gradients and trains on the most
uncertain ones; evaluation covers every task's dev split and keeps ONE model-selection rule
(the GLUE average); the task mix is logged. Optimisation, schedules, mixed precision,
checkpoints, distributed training and logging integrations are the Trainer's.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, DataLoader
from transformers import Trainer

from camtl.errors import TrainingDiverged
from camtl.evaluation import evaluate_tasks
from camtl.features import MultiTaskCollator, TaskDataset, TaskFeatures
from camtl.sampling import TaskSampler, regression_uncertainty, select_most_uncertain

logger = logging.getLogger(__name__)

TOKEN_FIELDS = ("input_ids", "token_type_ids", "attention_mask")


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


class CaMtlTrainer(Trainer):
    """HF Trainer with task-sampled batches, MT-Uncertainty selection and GLUE evaluation."""

    def __init__(
        self,
        *args,
        train_sets: dict[str, TaskFeatures] | None = None,
        dev_sets: dict[str, TaskFeatures] | None = None,
        task_sampler: TaskSampler | None = None,
        collator: MultiTaskCollator,
        **kwargs,
    ):
        # eval_dataset only satisfies the Trainer's checks: evaluate() below reads self.dev_sets.
        super().__init__(*args, data_collator=collator, eval_dataset=dev_sets or None, **kwargs)
        self.collator = collator
        self.dev_sets = dev_sets or {}
        self.task_sampler = task_sampler
        self.evaluations: list[dict] = []
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

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        example_index = inputs.pop("example_index")
        if self.task_sampler is not None and self.task_sampler.scores_candidates:
            inputs, example_index = self.select_uncertain_candidates(model, inputs, example_index)
        self.usage.record(inputs["task_ids"], example_index)
        outputs = model(**inputs)
        # The fp16 grad scaler skips non-finite steps itself; otherwise a NaN would silently ruin the weights.
        if not self.args.fp16 and not torch.isfinite(outputs.loss):
            raise self.divergence(outputs.loss, inputs["task_ids"])
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def divergence(self, loss: torch.Tensor, task_ids: torch.Tensor) -> TrainingDiverged:
        tasks = sorted({self.model.config.tasks[t] for t in task_ids.tolist()})
        step = self.state.global_step + 1
        return TrainingDiverged(
            f"the loss is {loss.item()} at step {step} on a batch of {', '.join(tasks)}:"
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
        selected = {key: value[keep] for key, value in pool.items()}
        if selected["input_ids"].device.type == "cpu":
            longest = int(selected["attention_mask"].sum(1).max())
            for key in TOKEN_FIELDS:
                selected[key] = selected[key][:, :longest]
        self.usage.selection_seconds += time.perf_counter() - started
        return selected, example_index[keep]

    def _score_pool(self, scorer, pool: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(entropy, first logit) of every candidate, fp32, in the sampler's scoring mode."""
        was_training = scorer.training
        scorer.train(self.task_sampler.scoring_mode == "train")
        with torch.no_grad(), self.autocast_smart_context_manager():
            if pool["input_ids"].device.type != "cpu":
                output = scorer(**{key: pool[key] for key in TOKEN_FIELDS}, task_ids=pool["task_ids"])
                entropy, prediction = output.entropy, output.logits[:, 0]
            else:
                entropy, prediction = self._score_in_chunks(scorer, pool)
        scorer.train(was_training)
        return entropy.float(), prediction.float()

    def _score_in_chunks(self, scorer, pool: dict) -> tuple[torch.Tensor, torch.Tensor]:
        chunk = self.task_sampler.selected_per_step
        lengths = pool["attention_mask"].sum(1)
        order = torch.argsort(lengths, descending=True)
        entropy = torch.empty(len(order))
        prediction = torch.empty(len(order))
        for start, length in zip(range(0, len(order), chunk), lengths[order[::chunk]].tolist(), strict=True):
            rows = order[start : start + chunk]
            inputs = {key: pool[key][rows, :length] for key in TOKEN_FIELDS}
            output = scorer(**inputs, task_ids=pool["task_ids"][rows])
            entropy[rows] = output.entropy.float()
            prediction[rows] = output.logits[:, 0].float()
        return entropy, prediction

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
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
            self.collator,
            self.args.per_device_eval_batch_size,
            autocast=self.autocast_smart_context_manager,
        )
        record = {"step": self.state.global_step, "results": results}
        self.evaluations.append(record)
        metrics = {f"{metric_key_prefix}_glue_average": results["glue_average"]}
        for task, values in results.items():
            if isinstance(values, dict):
                metrics.update(
                    {f"{metric_key_prefix}_{task}_{name}": value for name, value in values.items()}
                )
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        if self.is_world_process_zero():
            logger.info(
                "evaluation at step %d: GLUE average %.4f", self.state.global_step, results["glue_average"]
            )
        return metrics

    def best_evaluation(self) -> dict | None:
        """The evaluation with the highest GLUE average (the one selection rule), earliest on ties."""
        return max(self.evaluations, key=lambda e: e["results"]["glue_average"], default=None)

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        checkpoint = Path(self._get_output_dir(trial)) / f"checkpoint-{self.state.global_step}"
        if hasattr(self, "usage"):  # every rank keeps its own counters
            checkpoint.mkdir(parents=True, exist_ok=True)
            torch.save(self.usage.state_dict(), checkpoint / sampling_state_file(self.args.process_index))
        if self.is_world_process_zero():
            (checkpoint / "evaluations.json").write_text(json.dumps(self.evaluations, indent=2))

    def load_sampling_state(self, checkpoint: str) -> None:
        """Restore the task-usage counters and evaluation history saved with a checkpoint."""
        state_file = Path(checkpoint) / sampling_state_file(self.args.process_index)
        if state_file.exists():
            self.usage.load_state_dict(torch.load(state_file, weights_only=True))
        history = Path(checkpoint) / "evaluations.json"
        if history.exists():
            self.evaluations = json.loads(history.read_text())
