"""Options that the diagnosis supports: the heads' learning-rate multiplier."""

from pathlib import Path

import pytest
import torch

from camtl.data.collation import MultiTaskCollator
from camtl.data.features import load_features
from camtl.errors import UsageError
from camtl.model import load_model, load_tokenizer
from camtl.training.arguments import CaMtlTrainingArguments
from camtl.training.sampling import build_sampler
from camtl.training.trainer import CaMtlTrainer

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "glue"


def trainer_with(tiny_bert, tmp_path, **options) -> CaMtlTrainer:
    torch.manual_seed(0)
    model = load_model(str(tiny_bert), ["rte", "cola"], layout="base", max_seq_length=32)
    tokenizer = load_tokenizer(str(tiny_bert))
    train_sets = {
        t: load_features(FIXTURES, t, "train", tokenizer, 32, cache_dir=tmp_path) for t in ["rte", "cola"]
    }
    args = CaMtlTrainingArguments(
        output_dir=str(tmp_path / "out"), report_to="none", learning_rate=1e-3, max_steps=4,
        per_device_train_batch_size=4, warmup_proportion=0.0, **options,
    )  # fmt: skip
    sampler = build_sampler("proportional", [len(f) for f in train_sets.values()], 4, seed=0)
    return CaMtlTrainer(model=model, args=args, train_sets=train_sets, task_sampler=sampler,
                        collator=MultiTaskCollator(tokenizer.pad_token_id))  # fmt: skip


def group_lrs(trainer: CaMtlTrainer) -> dict[str, set[float]]:
    """The learning rate of every parameter, by whether it belongs to the heads."""
    heads = {id(p) for p in trainer.model.heads.parameters()}
    lrs = {"heads": set(), "rest": set()}
    for group in trainer.optimizer.param_groups:
        for p in group["params"]:
            lrs["heads" if id(p) in heads else "rest"].add(round(group["lr"], 12))
    return lrs


def test_heads_learn_at_the_multiple_of_the_learning_rate_through_the_schedule(tiny_bert, tmp_path):
    trainer = trainer_with(tiny_bert, tmp_path, head_lr_multiplier=10.0)
    trainer.create_optimizer_and_scheduler(num_training_steps=4)
    assert group_lrs(trainer) == {"heads": {1e-2}, "rest": {1e-3}}
    trainable = [p for p in trainer.model.parameters() if p.requires_grad]
    in_groups = [p for g in trainer.optimizer.param_groups for p in g["params"]]
    assert len(in_groups) == len(trainable) and {id(p) for p in in_groups} == {id(p) for p in trainable}
    # Weight decay still spares biases: the heads' bias sits in a group without decay.
    bias = trainer.model.heads.classifier.bias
    bias_group = next(g for g in trainer.optimizer.param_groups if any(p is bias for p in g["params"]))
    assert bias_group["weight_decay"] == 0.0
    trainer.lr_scheduler.step()  # linear decay over 4 steps: both groups decay by the same factor
    assert group_lrs(trainer) == {"heads": {7.5e-3}, "rest": {7.5e-4}}


def test_heads_multiplier_one_is_the_trainers_own_optimizer(tiny_bert, tmp_path):
    trainer = trainer_with(tiny_bert, tmp_path)
    trainer.create_optimizer_and_scheduler(num_training_steps=4)
    assert len(trainer.optimizer.param_groups) == 2  # decay / no decay, as transformers builds them
    assert group_lrs(trainer) == {"heads": {1e-3}, "rest": {1e-3}}


def test_training_with_the_multiplier_moves_the_heads_more(tiny_bert, tmp_path):
    moved = {}
    for multiplier in (1.0, 30.0):
        trainer = trainer_with(tiny_bert, tmp_path / str(multiplier), head_lr_multiplier=multiplier)
        before = trainer.model.heads.classifier.weight.detach().clone()
        trainer.train()
        moved[multiplier] = float((trainer.model.heads.classifier.weight.detach() - before).norm())
    assert moved[30.0] > 5 * moved[1.0]


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan")])
def test_a_multiplier_that_is_not_positive_is_refused(tmp_path, value):
    with pytest.raises(UsageError, match="head_lr_multiplier"):
        CaMtlTrainingArguments(output_dir=str(tmp_path), head_lr_multiplier=value)


def test_batches_are_grouped_by_length_unless_asked_otherwise(tmp_path):
    import run

    common = [
        "--model_name_or_path",
        "CA-MTL-mini",
        "--data_dir",
        str(FIXTURES),
        "--output_dir",
        str(tmp_path),
    ]
    _, _, args = run.parse_arguments(common)
    assert args.train_sampling_strategy == "group_by_length"
    _, _, args = run.parse_arguments([*common, "--train_sampling_strategy", "random"])
    assert args.train_sampling_strategy == "random"
