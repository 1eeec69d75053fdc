"""Outputs that line up with the inputs and never report the undefined as a number (issue category 9):
one predicted tag per word for sentences longer than --max_seq_length; a correlation over constant
values, or an F1 with no positive on either side, reported as undefined (None, "-" in the table) and
left out of the averages; no submission zip of a test set cut by --max_predict_samples; margins over the
probe's floor only on the dev rows the floor was scored on."""

from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from bad_input_setups import FIXTURES, run_forked
from test_bad_inputs import checkpoint as checkpoint  # a fixture: a camtl checkpoint of rte and sst-2
from transformers import BertConfig

from camtl.bench import probe
from camtl.data.collation import Masking, MultiTaskCollator
from camtl.data.examples import Examples
from camtl.data.features import tokenize_examples
from camtl.data.splits import read_split
from camtl.errors import UsageError
from camtl.model import CaMtlConfig, CaMtlModel
from camtl.training.evaluation import predict_features
from camtl.training.metrics import compute_metrics, format_results_table, selection_score, summarize
from camtl.training.submission import SUBMISSION_ZIP, cut_short

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


# An F1 with nothing to find and nothing found is 0/0: undefined like a correlation over constants.
UNDEFINED_F1 = {
    "binary f1, no positive gold label or prediction": (
        "mrpc", np.zeros(4, dtype=int), np.zeros(4, dtype=int),
        {"f1": None, "acc_and_f1": None, "score": None},
    ),
    "entity f1, no entity in the gold or the predicted tags": (
        "wnut17", [[0, 0], [0]], [[0, 0], [0]],
        {"entity_f1": None, "entity_precision": None, "entity_recall": None, "score": None},
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(UNDEFINED_F1))
def test_an_f1_over_no_positive_is_undefined_and_left_out_of_the_averages(name, caplog):
    task, predictions, labels, undefined = UNDEFINED_F1[name]
    metrics = compute_metrics(task, predictions, labels)
    assert {key: metrics[key] for key in undefined} == undefined
    with caplog.at_level(logging.WARNING, logger="camtl.training.metrics"):
        summary = summarize({task: metrics, "rte": {"accuracy": 0.6, "score": 0.6}})
    assert summary.get("average", summary.get("glue_average")) == pytest.approx(0.6)
    assert any(f"{task}: the score is undefined" in r.getMessage() for r in caplog.records)


def test_a_class_on_neither_side_is_left_out_of_macro_f1_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="camtl.training.metrics"):
        metrics = compute_metrics("cb", np.array([0, 0, 1]), np.array([0, 0, 1]))  # no 'neutral' at all
    assert metrics["macro_f1"] == 1.0  # not (1 + 1 + 0) / 3
    assert "cb: no gold label and no prediction is 'neutral'" in caplog.text


def test_a_non_score_metric_that_is_undefined_is_named(caplog):
    with caplog.at_level(logging.WARNING, logger="camtl.training.metrics"):
        summarize({"wic-file": {"accuracy": 1.0, "f1": None, "score": 1.0}})
    assert "wic-file f1 undefined" in caplog.text


# A prediction of the first --max_predict_samples test rows is no leaderboard submission.


@pytest.fixture(scope="module")
def predictions(checkpoint, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("partial-predictions")

    def predict(limit: str) -> list[str]:
        return ["--model_name_or_path", str(checkpoint), "--data_dir", str(FIXTURES), "--output_dir",
                str(root / limit), "--features_cache_dir", str(root / "cache"), "--report_to", "none",
                "--do_predict", "--max_predict_samples", limit]  # fmt: skip

    return {"root": root, **run_forked({"3": predict("3"), "10": predict("10")}, root / "logs")}


def test_a_prediction_of_the_first_test_rows_writes_no_submission_zip(predictions):
    result, out = predictions["3"], predictions["root"] / "3"
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (out / SUBMISSION_ZIP).exists()
    assert len((out / "RTE.tsv").read_text().splitlines()) == 1 + 3
    (warning,) = [line for line in result.stderr.splitlines() if "--max_predict_samples" in line]
    assert "RTE.tsv" in warning and f"no {SUBMISSION_ZIP} is written" in warning


def test_a_limit_that_covers_the_whole_test_set_still_writes_the_zip(predictions):
    result, out = predictions["10"], predictions["root"] / "10"  # the fixture test sets have 10 rows
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / SUBMISSION_ZIP).is_file() and "--max_predict_samples" not in result.stderr


def test_cut_short_names_the_tasks_with_more_test_rows_than_predicted():
    assert cut_short(["rte", "sst-2"], [str(FIXTURES)], 3) == ["rte", "sst-2"]
    assert cut_short(["rte"], [str(FIXTURES)], 10) == []  # exactly the test set
    assert cut_short(["rte"], [str(FIXTURES)], None) == []


# Margins over the probe's floor compare a run with the floor on the same dev rows.


def margins_setup(tmp_path: Path, results: str, probe_rows: int) -> argparse.Namespace:
    """A run folder (eval_results.json, checkpoint-2/run_settings.json recording the fixtures and
    --max_eval_samples 5) and a probe file whose RTE dev set has ``probe_rows`` rows."""
    run_dir = tmp_path / "run"
    (run_dir / "checkpoint-2").mkdir(parents=True)
    (run_dir / "eval_results.json").write_text(results)
    settings = {"data_dir": [str(FIXTURES)], "max_eval_samples": 5}
    (run_dir / "checkpoint-2" / "run_settings.json").write_text(json.dumps(settings))
    rte = {"dev_rows": probe_rows, "dev": {"all": {"score": 0.55}, "5": {"score": 0.4}}}
    (tmp_path / "probe.json").write_text(json.dumps({"probes": {"mean": {"tasks": {"rte": rte}}}}))
    return argparse.Namespace(run_dir=run_dir, max_eval_samples=None, probe=tmp_path / "probe.json")


RTE_SCORED = '{"rte": {"accuracy": 0.6, "score": 0.6}, "glue_average": 0.6}'
DEV_ROWS = len(read_split(FIXTURES, "rte", "dev"))  # the fixture's, not RTE's 277

MARGIN_REFUSALS = {
    "a run on other dev rows than the probe's": (
        RTE_SCORED, 277, f"RTE/dev.tsv ({DEV_ROWS} rows), not on the rte dev set of 277 rows"
    ),
    "eval_results.json without a score": ('{"rte": {"accuracy": 0.6}}', DEV_ROWS, "has no score for rte"),
    "eval_results.json that is not JSON": ('{"rte": ', DEV_ROWS, "eval_results.json is not valid JSON"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(MARGIN_REFUSALS))
def test_margins_refuse_what_they_cannot_compare_in_one_line(name, tmp_path):
    results, probe_rows, expected = MARGIN_REFUSALS[name]
    with pytest.raises(UsageError, match=re.escape(expected)):
        probe.run_margins(margins_setup(tmp_path, results, probe_rows), "margins")


def test_margins_of_a_run_without_recorded_settings_need_max_eval_samples(tmp_path, capsys):
    args = margins_setup(tmp_path, RTE_SCORED, DEV_ROWS)
    (args.run_dir / "checkpoint-2" / "run_settings.json").write_text("{")  # damaged: its cap is unknown
    with pytest.raises(UsageError, match="its --max_eval_samples is unknown: give the run's"):
        probe.run_margins(args, "margins")
    args.max_eval_samples = 5
    probe.run_margins(args, "margins")
    assert "on the first 5 dev rows" in capsys.readouterr().out


def test_margins_read_the_runs_recorded_max_eval_samples(tmp_path, capsys):
    probe.run_margins(margins_setup(tmp_path, RTE_SCORED, DEV_ROWS), "margins")
    printed = capsys.readouterr().out
    assert "on the first 5 dev rows" in printed
    assert "rte         60.00   40.00   +20.00" in printed  # the floor on the first 5 rows, not on all
