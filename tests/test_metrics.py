import json
import logging
import math
import re
import warnings

import numpy as np
import pytest

from camtl.errors import UsageError
from camtl.tasks import PRIMARY_METRIC, TASKS
from camtl.training.metrics import compute_metrics, format_results_table, glue_average, summarize

# A binary case with every confusion cell different: TP=3, TN=4, FP=2, FN=1.
LABELS = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
PREDICTIONS = np.array([1, 1, 1, 0, 0, 0, 0, 0, 1, 1])
TP, TN, FP, FN = 3, 4, 2, 1


@pytest.fixture(autouse=True)
def warnings_are_errors():
    """Metrics must never print a warning (sklearn's zero division, scipy's constant input)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_mcc_and_accuracy_match_the_confusion_matrix_formula():
    metrics = compute_metrics("cola", PREDICTIONS, LABELS)
    expected_mcc = (TP * TN - FP * FN) / math.sqrt((TP + FP) * (TP + FN) * (TN + FP) * (TN + FN))
    assert metrics["mcc"] == pytest.approx(expected_mcc)
    assert metrics["accuracy"] == pytest.approx((TP + TN) / len(LABELS))
    assert metrics["score"] == metrics["mcc"]


@pytest.mark.parametrize("task", ["mrpc", "qqp"])
def test_f1_is_for_the_positive_class_and_the_score_averages_it_with_accuracy(task):
    metrics = compute_metrics(task, PREDICTIONS, LABELS)
    expected_f1 = 2 * TP / (2 * TP + FP + FN)
    expected_accuracy = (TP + TN) / len(LABELS)
    assert metrics["f1"] == pytest.approx(expected_f1)
    assert metrics["accuracy"] == pytest.approx(expected_accuracy)
    assert metrics["acc_and_f1"] == pytest.approx((expected_f1 + expected_accuracy) / 2)
    assert metrics["score"] == metrics["acc_and_f1"]


def test_stsb_pearson_spearman_and_their_mean():
    labels = np.array([0.0, 1.5, 2.0, 3.5, 5.0])
    predictions = np.array([0.5, 1.0, 2.5, 4.5, 4.0])
    metrics = compute_metrics("sts-b", predictions, labels)
    centred_p, centred_l = predictions - predictions.mean(), labels - labels.mean()
    pearson = (centred_p @ centred_l) / math.sqrt((centred_p @ centred_p) * (centred_l @ centred_l))
    # No ties: Spearman is Pearson on ranks. Label ranks 1..5; prediction ranks swap the last two.
    rank_p, rank_l = np.array([1, 2, 3, 5, 4]) - 3.0, np.array([1, 2, 3, 4, 5]) - 3.0
    spearman = (rank_p @ rank_l) / (rank_l @ rank_l)
    assert metrics["pearson"] == pytest.approx(pearson)
    assert metrics["spearman"] == pytest.approx(spearman)
    assert metrics["corr"] == pytest.approx((pearson + spearman) / 2)
    assert metrics["score"] == metrics["corr"]


def test_multiclass_accuracy_for_mnli():
    metrics = compute_metrics("mnli", np.array([0, 1, 2, 2]), np.array([0, 1, 2, 1]))
    assert metrics == {"accuracy": 0.75, "score": 0.75}


@pytest.mark.parametrize("task", list(PRIMARY_METRIC))
def test_every_scored_task_reports_its_metrics_and_score_as_json_floats(task):
    rng = np.random.default_rng(0)
    if TASKS[task].is_regression:
        predictions, labels = rng.uniform(0, 5, 20), rng.uniform(0, 5, 20)
    else:
        predictions, labels = rng.integers(0, TASKS[task].num_labels, (2, 20))
    metrics = compute_metrics(task, predictions, labels)
    assert list(metrics) == [*TASKS[task].metrics, "score"]
    assert metrics["score"] == metrics[PRIMARY_METRIC[task]]
    assert all(type(value) is float for value in metrics.values())
    assert -1.0 <= metrics["score"] <= 1.0
    assert json.loads(json.dumps(metrics)) == metrics


def test_user_spellings_of_task_names_are_accepted():
    assert compute_metrics("SST-2", np.array([1, 0]), np.array([1, 1]))["accuracy"] == 0.5


def test_constant_predictions_give_zero_mcc_and_an_undefined_correlation_not_nan():
    cola = compute_metrics("cola", np.ones(6, dtype=int), np.array([0, 1, 0, 1, 1, 0]))
    assert cola["mcc"] == 0.0
    assert cola["accuracy"] == 0.5
    stsb = compute_metrics("sts-b", np.full(5, 2.5), np.array([0.0, 1.0, 2.0, 3.0, 4.0]))
    assert stsb == {"pearson": None, "spearman": None, "corr": None, "score": None}


def test_constant_predictions_warn_once_naming_the_task_that_mcc_is_zero_by_convention(caplog):
    with caplog.at_level(logging.WARNING, logger="camtl.training.metrics"):
        compute_metrics("cola", np.ones(6, dtype=int), np.array([0, 1, 0, 1, 1, 0]))
    assert [r.getMessage() for r in caplog.records] == [
        "cola: every prediction is class 1, so MCC is 0 by GLUE's convention (undefined otherwise)"
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="camtl.training.metrics"):
        compute_metrics("cola", PREDICTIONS, LABELS)  # a measured MCC: nothing to say
    assert not caplog.records


def test_constant_labels_give_zero_mcc_and_an_undefined_correlation_not_nan():
    assert compute_metrics("cola", np.array([0, 1, 1, 0]), np.ones(4, dtype=int))["mcc"] == 0.0
    stsb = compute_metrics("sts-b", np.array([0.0, 1.0, 2.0]), np.full(3, 4.0))
    assert stsb["corr"] is None


def test_no_positive_prediction_gives_f1_zero():
    metrics = compute_metrics("mrpc", np.zeros(4, dtype=int), np.array([1, 0, 1, 0]))
    assert metrics["f1"] == 0.0
    assert metrics["accuracy"] == 0.5
    assert metrics["acc_and_f1"] == 0.25


def test_all_negative_labels_predicted_right_give_full_accuracy_and_an_undefined_f1():
    metrics = compute_metrics("qqp", np.zeros(5, dtype=int), np.zeros(5, dtype=int))
    assert metrics["accuracy"] == 1.0
    assert metrics["f1"] is None and metrics["score"] is None  # 2TP / (2TP + FP + FN) is 0/0


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="shapes"):
        compute_metrics("sst-2", np.array([0, 1]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="shapes"):
        compute_metrics("sst-2", np.array([]), np.array([]))
    with pytest.raises(ValueError, match="class indices"):
        compute_metrics("sst-2", np.array([0, 2]), np.array([0, 1]))
    with pytest.raises(ValueError, match="class indices"):
        compute_metrics("sst-2", np.array([0.2, 0.9]), np.array([0, 1]))
    with pytest.raises(ValueError, match="NaN"):
        compute_metrics("sts-b", np.array([1.0, np.nan]), np.array([1.0, 2.0]))
    with pytest.raises(UsageError, match="unknown task"):
        compute_metrics("squad", np.array([0]), np.array([0]))
    with pytest.raises(UsageError, match="no gold labels"):
        compute_metrics("ax", np.array([0]), np.array([0]))


# BERT-base on the GLUE test server (Devlin et al., 2019, table 1); the papers' 79.6 average counts
# MNLI-m and MNLI-mm as two entries and leaves WNLI out.
BERT_BASE_TEST = {
    "mnli": 84.6,
    "mnli-mm": 83.4,
    "qqp": 71.2,
    "qnli": 90.5,
    "sst-2": 93.5,
    "cola": 52.1,
    "sts-b": 85.8,
    "mrpc": 88.9,
    "rte": 66.4,
}


def results_from_scores(scores: dict[str, float]) -> dict[str, dict]:
    return {task: {"score": score / 100} for task, score in scores.items()}


def test_glue_average_reproduces_bert_base_79_6():
    results = results_from_scores(BERT_BASE_TEST)
    assert round(100 * glue_average(results), 1) == 79.6


def test_glue_average_leaves_wnli_out_unless_asked():
    results = results_from_scores({"sst-2": 90.0, "rte": 70.0, "wnli": 20.0})
    assert glue_average(results) == pytest.approx(0.80)
    assert glue_average(results, include_wnli=True) == pytest.approx(0.60)


def test_glue_average_ignores_non_task_keys():
    results = {**results_from_scores({"cola": 50.0, "mrpc": 90.0}), "glue_average": 0.1, "epoch": 3}
    assert glue_average(results) == pytest.approx(0.70)


def test_glue_average_without_tasks_raises_instead_of_nan():
    with pytest.raises(ValueError, match="no scored GLUE task"):
        glue_average({"glue_average": 0.5})
    with pytest.raises(ValueError, match="no scored GLUE task"):
        glue_average(results_from_scores({"wnli": 50.0}))


def test_summarize_adds_the_averages_and_is_json():
    results = results_from_scores({"cola": 50.0, "mrpc": 90.0})
    summary = summarize(results)
    assert summary == {**results, "glue_average": pytest.approx(0.70)}
    assert json.loads(json.dumps(summary)) == summary

    with_wnli = summarize({**results, "wnli": {"accuracy": 0.4, "score": 0.4}})
    assert with_wnli["glue_average"] == pytest.approx(0.70)
    assert with_wnli["glue_average_with_wnli"] == pytest.approx(0.60)


def test_results_table_has_a_row_per_task_and_the_averages():
    rng = np.random.default_rng(1)
    results = {}
    for task in PRIMARY_METRIC:
        if TASKS[task].is_regression:
            predictions, labels = rng.uniform(0, 5, 30), rng.uniform(0, 5, 30)
        else:
            predictions, labels = rng.integers(0, TASKS[task].num_labels, (2, 30))
        results[task] = compute_metrics(task, predictions, labels)
    summary = summarize(results)
    lines = format_results_table(summary).splitlines()

    for task, metrics in results.items():
        (row,) = [line for line in lines if line.split()[0] == task]
        assert row.split()[1] == PRIMARY_METRIC[task]
        assert row.split()[2] == f"{100 * metrics['score']:.2f}"
        for name, value in metrics.items():
            if name not in ("score", PRIMARY_METRIC[task]):
                assert f"{name} {100 * value:.2f}" in row
    (without_wnli,) = [line for line in lines if "without WNLI" in line]
    assert without_wnli.endswith(f"{100 * summary['glue_average']:.2f}")
    (with_wnli,) = [line for line in lines if "with WNLI" in line]
    assert with_wnli.endswith(f"{100 * summary['glue_average_with_wnli']:.2f}")
    # Fixed width: task scores and averages end in the same column.
    score_ends = {list(re.finditer(r"\S+", line))[2].end() for line in lines[1 : 1 + len(results)]}
    assert score_ends == {len(without_wnli)} == {len(with_wnli)}


def test_summary_of_wnli_alone_averages_wnli():
    summary = summarize({"wnli": {"accuracy": 0.5, "score": 0.5}})
    assert summary["glue_average"] == 0.5
    assert summary["glue_average_with_wnli"] == 0.5


def test_the_table_shows_unregistered_tasks_and_losses_unscaled():
    # What a fresh process reads from the eval_results.json of a run on task-file tasks and an MLM task.
    results = {
        "sst-2": {"accuracy": 0.8, "score": 0.8},
        "wic-file": {"accuracy": 0.58, "score": 0.58},
        "wikitext2-mlm": {"masked_accuracy": 0.035, "masked_loss": 7.5471, "score": 0.035},
        "average": 0.47,
    }
    lines = format_results_table(results).splitlines()
    (wic,) = [line for line in lines if line.startswith("wic-file")]
    assert wic.split()[1:3] == ["accuracy", "58.00"]
    (mlm,) = [line for line in lines if line.startswith("wikitext2-mlm")]
    assert "masked_loss 7.547" in mlm and "754" not in mlm
    assert [line.split()[0] for line in lines[1:4]] == ["sst-2", "wikitext2-mlm", "wic-file"]
