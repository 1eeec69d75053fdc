"""The trainer's MT-Uncertainty step and task-usage counters, on the tiny model and the fixtures."""

import math
from pathlib import Path

import pytest
import torch

from camtl.data.collation import MultiTaskCollator, sequence_lengths
from camtl.data.features import TaskDataset, load_features
from camtl.model import load_model, load_tokenizer
from camtl.training import precision
from camtl.training.arguments import CaMtlTrainingArguments
from camtl.training.counters import TaskUsage
from camtl.training.sampling import build_sampler
from camtl.training.trainer import CaMtlTrainer

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "glue"
TASKS = ["cola", "mrpc", "sts-b", "mnli"]


def test_mt_uncertainty_trains_on_the_highest_scoring_candidates(tiny_bert, tmp_path):
    torch.manual_seed(0)
    model = load_model(str(tiny_bert), TASKS, layout="base", max_seq_length=64)
    tokenizer = load_tokenizer(str(tiny_bert))
    train_sets = {t: load_features(FIXTURES, t, "train", tokenizer, 64, cache_dir=tmp_path) for t in TASKS}
    b = 3
    sizes = [len(f) for f in train_sets.values()]
    sampler = build_sampler("mt-uncertainty", sizes, b, seed=0, mtu_scoring_mode="eval")
    collator = MultiTaskCollator(tokenizer.pad_token_id)
    args = CaMtlTrainingArguments(output_dir=str(tmp_path / "out"), report_to="none")
    trainer = CaMtlTrainer(
        model=model, args=args, train_sets=train_sets, task_sampler=sampler, collator=collator
    )
    pool_indices = next(iter(sampler))
    pool = collator([trainer.train_dataset[i] for i in pool_indices])
    example_index = pool.pop("example_index")

    selected, kept_index = trainer.select_uncertain_candidates(model, dict(pool), example_index)

    # Re-state Algorithm 1 example by example, each candidate unpadded; every STS-B candidate's
    # uncertainty is the RMSE over the pool's STS-B candidates divided by 5 / sqrt(12), at most 1.
    model.eval()
    uncertainties, stsb_squared_errors = [], []
    with torch.no_grad():
        for i in range(len(pool_indices)):
            n = int(pool["attention_mask"][i].sum())
            output = model(
                input_ids=pool["input_ids"][i : i + 1, :n],
                token_type_ids=pool["token_type_ids"][i : i + 1, :n],
                task_ids=pool["task_ids"][i : i + 1],
            )
            if TASKS[int(pool["task_ids"][i])] == "sts-b":
                stsb_squared_errors.append((float(output.logits[0, 0]) - float(pool["labels"][i])) ** 2)
                uncertainties.append(None)
            else:
                uncertainties.append(float(output.entropy[0]))
    stsb = min(1.0, math.sqrt(sum(stsb_squared_errors) / len(stsb_squared_errors)) / (5 / math.sqrt(12)))
    entropy = torch.tensor([stsb if u is None else u for u in uncertainties])
    task_means = entropy.view(len(TASKS), b).mean(1)
    scores = entropy * (task_means / task_means.max()).repeat_interleave(b)
    expected = set(scores.topk(b).indices.tolist())
    assert len(selected["input_ids"]) == b
    assert {(int(t), int(e)) for t, e in zip(selected["task_ids"], kept_index, strict=True)} == {
        (int(pool["task_ids"][i]), int(example_index[i])) for i in expected
    }
    # The selected batch is trimmed to its own longest example.
    assert selected["input_ids"].shape[1] == int(sequence_lengths(selected).max())
    assert trainer.usage.selection_seconds > 0


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_mt_uncertainty_scores_in_the_chosen_mode_and_restores_the_models(tiny_bert, tmp_path, mode):
    model = load_model(str(tiny_bert), TASKS, layout="base", max_seq_length=64).train()
    tokenizer = load_tokenizer(str(tiny_bert))
    train_sets = {t: load_features(FIXTURES, t, "train", tokenizer, 64, cache_dir=tmp_path) for t in TASKS}
    sampler = build_sampler(
        "mt-uncertainty", [len(f) for f in train_sets.values()], 2, 0, mtu_scoring_mode=mode
    )
    collator = MultiTaskCollator(tokenizer.pad_token_id)
    args = CaMtlTrainingArguments(output_dir=str(tmp_path / "out"), report_to="none")
    trainer = CaMtlTrainer(
        model=model, args=args, train_sets=train_sets, task_sampler=sampler, collator=collator
    )
    seen = []
    model.heads.register_forward_hook(lambda module, args, output: seen.append(module.dropout.training))
    pool = collator([trainer.train_dataset[i] for i in next(iter(sampler))])
    trainer.select_uncertain_candidates(model, pool, pool.pop("example_index"))
    assert seen and all(training == (mode == "train") for training in seen)  # dropout on as the authors'
    assert model.training  # the training step that follows runs in training mode


def test_task_usage_counts_draws_and_distinct_examples():
    usage = TaskUsage(["rte", "cola"], [4, 10])
    usage.record(torch.tensor([0, 0, 1]), torch.tensor([1, 1, 9]))
    usage.record(torch.tensor([1]), torch.tensor([0]))
    summary = usage.summary()
    assert summary["sampling/rte/examples_drawn"] == 2
    assert summary["sampling/rte/percent_used"] == 25.0
    assert summary["sampling/cola/examples_drawn"] == 2
    assert summary["sampling/cola/percent_used"] == 20.0
    assert summary["sampling/percent_used_all"] == round(100 * 3 / 14, 2)
    restored = TaskUsage(["rte", "cola"], [4, 10])
    restored.load_state_dict(usage.state_dict())
    assert restored.summary() == summary


def test_train_dataset_tags_examples_with_the_models_task_ids(tiny_bert, tmp_path):
    model = load_model(str(tiny_bert), ["rte", "cola"], layout="none", max_seq_length=32)
    tokenizer = load_tokenizer(str(tiny_bert))
    features = {
        t: load_features(FIXTURES, t, "train", tokenizer, 32, cache_dir=tmp_path) for t in ["cola", "rte"]
    }
    args = CaMtlTrainingArguments(output_dir=str(tmp_path / "out"), report_to="none")
    trainer = CaMtlTrainer(
        model=model, args=args, train_sets=features, collator=MultiTaskCollator(tokenizer.pad_token_id)
    )
    first_rte = len(features["cola"])
    assert trainer.train_dataset[0]["task_id"] == model.task_index("cola")
    assert trainer.train_dataset[first_rte]["task_id"] == model.task_index("rte")
    assert isinstance(trainer.train_dataset.datasets[0], TaskDataset)


def test_evaluation_runs_under_the_training_autocast(tiny_bert, tmp_path, monkeypatch):
    # The autocast path is under test, not this CPU: a CPU without native bf16 refuses --bf16.
    native = precision.CpuReport("a CPU with native bf16", ("avx512_bf16",))
    monkeypatch.setattr(precision, "this_cpu", lambda: native)
    model = load_model(str(tiny_bert), ["rte"], layout="base", max_seq_length=32)
    tokenizer = load_tokenizer(str(tiny_bert))
    dev = {"rte": load_features(FIXTURES, "rte", "dev", tokenizer, 32, cache_dir=tmp_path)}
    args = CaMtlTrainingArguments(output_dir=str(tmp_path / "out"), report_to="none", bf16=True)
    trainer = CaMtlTrainer(
        model=model, args=args, dev_sets=dev, collator=MultiTaskCollator(tokenizer.pad_token_id)
    )
    seen = []
    model.backbone.register_forward_hook(
        lambda module, args, output: seen.append(
            (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"))
        )
    )
    trainer.evaluate()
    assert seen and set(seen) == {(True, torch.bfloat16)}  # evaluation-only runs are not silently fp32


def test_gpu_defaults_find_no_unused_parameters_and_no_per_step_nan_filter(tmp_path):
    args = CaMtlTrainingArguments(output_dir=str(tmp_path / "out"), report_to="none")
    assert args.ddp_find_unused_parameters is False and args.ddp_broadcast_buffers is False
    assert args.logging_nan_inf_filter is False
    assert args.dataloader_num_workers == (2 if torch.cuda.is_available() else 0)
