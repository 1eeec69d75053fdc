"""MT-Uncertainty's step: score a pool of candidates without gradients and keep the most uncertain ones.

The rule itself (``regression_uncertainty``, ``select_most_uncertain``) is camtl.training.sampling's; this is
the part that needs the trainer's model and device, mixed into CaMtlTrainer (camtl.training.trainer).
"""

from __future__ import annotations

import time

import torch

from camtl.data.collation import select_examples, sequence_lengths
from camtl.training.precision import mixed_precision
from camtl.training.sampling import regression_uncertainty, select_most_uncertain

TOKEN_FIELDS = {"input_ids", "token_type_ids", "attention_mask"}


def _one_sequence_each(batch: dict) -> bool:
    """Sequence-level tasks only: a batch the CPU path can cut into length-sorted chunks."""
    return not {"sequence_owner", "mlm_positions", "token_labels"} & batch.keys()


class UncertaintySelection:
    """CaMtlTrainer's MT-Uncertainty candidate selection (reads ``task_sampler``, ``usage``, ``args``)."""

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
