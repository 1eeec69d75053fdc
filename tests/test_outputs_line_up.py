"""Outputs that line up with the inputs and never report the undefined as a number (issue category 9):
one predicted tag per word for sentences longer than --max_seq_length, and a correlation over constant
values reported as undefined (None, "-" in the table) and left out of the averages."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from transformers import BertConfig

from camtl.data.collation import Masking, MultiTaskCollator
from camtl.data.examples import Examples
from camtl.data.features import tokenize_examples
from camtl.model import CaMtlConfig, CaMtlModel
from camtl.training.evaluation import predict_features
from camtl.training.metrics import compute_metrics, format_results_table, selection_score, summarize

WORDS = [["Paris", "is", "nice"], [f"word{i}" for i in range(40)]]  # the second far past 12 tokens


def tagger(tokenizer) -> CaMtlModel:
    torch.manual_seed(0)
    bert = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                      num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)  # fmt: skip
    config = CaMtlConfig(layout="base", backbone=bert.to_dict(), tasks=["wnut17"], max_seq_length=12)
    return CaMtlModel(config).eval()


@pytest.mark.parametrize("split", ["dev", "test"])
def test_a_sentence_longer_than_max_seq_length_gets_one_tag_per_word(bundled_tokenizer, split, caplog):
    labels = [[0] * len(words) for words in WORDS] if split == "dev" else None
    examples = Examples(task="wnut17", split=split, text_a=WORDS, text_b=None, labels=labels, ids=["0", "1"])
    features = tokenize_examples(examples, bundled_tokenizer, max_seq_length=12)
    collator = MultiTaskCollator(bundled_tokenizer.pad_token_id, masking=Masking.of(bundled_tokenizer))
    model = tagger(bundled_tokenizer)
    with caplog.at_level(logging.WARNING, logger="camtl.training.evaluation"):
        tags = predict_features(model, features, collator, batch_size=2)
        again = predict_features(model, features, collator, batch_size=2)
    assert [len(t) for t in tags] == [len(words) for words in WORDS]
    assert tags[1][11:] == [0] * (len(WORDS[1]) - 11)  # past the cut: "O", wnut17's outside tag
    assert again == tags
    warnings = [r.getMessage() for r in caplog.records if "longer than --max_seq_length" in r.getMessage()]
    assert len(warnings) == 1 and "1 of 2 sentences" in warnings[0] and "'O'" in warnings[0]


def test_a_correlation_over_constant_predictions_is_undefined_not_zero():
    stsb = compute_metrics("sts-b", np.full(5, 2.5), np.array([0.0, 1.0, 2.0, 3.0, 4.0]))
    assert stsb == {"pearson": None, "spearman": None, "corr": None, "score": None}
    assert compute_metrics("sts-b", np.array([0.0, 1.0, 2.0]), np.full(3, 4.0))["score"] is None


def test_an_undefined_score_is_left_out_of_the_averages_with_a_warning(caplog):
    results = {
        "rte": {"accuracy": 0.6, "score": 0.6},
        "sts-b": {"pearson": None, "spearman": None, "corr": None, "score": None},
    }
    with caplog.at_level(logging.WARNING, logger="camtl.training.metrics"):
        summary = summarize(results)
    assert summary["glue_average"] == pytest.approx(0.6)
    assert any("sts-b: the score is undefined" in r.getMessage() for r in caplog.records)
    assert json.loads(json.dumps(summary))["sts-b"]["corr"] is None  # null in eval_results.json
    (row,) = [line for line in format_results_table(summary).splitlines() if line.startswith("sts-b")]
    assert row.split()[1:3] == ["corr", "-"] and "pearson -" in row and "0.00" not in row


def test_every_score_undefined_gives_no_average_and_ranks_below_any_defined_one():
    summary = summarize({"sts-b": {"pearson": None, "spearman": None, "corr": None, "score": None}})
    assert summary["glue_average"] is None
    assert selection_score(summary) == float("-inf") < selection_score({"glue_average": 0.0})
    assert format_results_table(summary).splitlines()[-1].split()[-1] == "-"
    mixed = summarize({**summary, "wic-file": {"accuracy": 0.5, "score": 0.5}})
    assert mixed["average"] == 0.5  # the defined task alone
