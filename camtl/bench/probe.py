"""The frozen-feature floor: a linear probe on the bundled encoder's sentence embeddings, no fine-tuning.

Every sentence is encoded once by the frozen encoder and pooled (mean over its tokens, the pooling the
encoder was trained for, or the [CLS] pooler that camtl's heads read by default). A single-sentence task's
features are the embedding u; a pair task's are SentEval's (u, v, |u - v|, u * v). A logistic regression
(STS-B: ridge regression) is fitted on the first ``train_rows`` training rows of each task, with its
regularisation chosen by 5-fold cross-validation on those rows for the task's GLUE metric, and scored on
the dev sets: whole, and on their first N rows for each N in ``caps`` (what ``--max_eval_samples N``
evaluates), so that any run can be compared with the floor on exactly its own dev rows.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import binomtest
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import make_scorer
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from transformers import AutoModel, AutoTokenizer

from camtl.bench.common import (
    COLUMN_NAMES,
    DEV_TASKS,
    GLUE_AVERAGE_TASKS,
    markdown_table,
    read_json,
    write_json,
    x100,
)
from camtl.data.sources import task_data_dir
from camtl.data.splits import read_split, split_exists, split_path
from camtl.errors import UsageError
from camtl.model.presets import bundled_encoder_path
from camtl.tasks import TASKS, TRAINABLE_TASKS, resolve_tasks
from camtl.training.checkpoints import recorded_run_settings
from camtl.training.metrics import compute_metrics
from camtl.training.run_settings import SETTINGS_FILE

C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)
RIDGE_ALPHAS = tuple(10.0**k for k in range(-2, 5))
DEFAULT_CAPS = (1000, 2000)


POOLINGS = ("mean", "cls")


@torch.inference_mode()
def encode(
    model: torch.nn.Module, tokenizer, texts: list[str], max_length: int, batch_size: int = 128
) -> dict[str, np.ndarray]:
    """Sentence embeddings (len(texts), d) in the order of ``texts``, one forward for both poolings:
    "mean" over the real tokens, and "cls", the [CLS] pooler (tanh(W h_CLS + b)) that camtl's heads read."""
    unique = sorted(set(texts), key=len)
    rows: dict[str, dict[str, np.ndarray]] = {pooling: {} for pooling in POOLINGS}
    model.eval()
    for start in range(0, len(unique), batch_size):
        batch = unique[start : start + batch_size]
        inputs = tokenizer(batch, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        output = model(**inputs)
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        pooled = {
            "mean": (output.last_hidden_state * mask).sum(1) / mask.sum(1),
            "cls": output.pooler_output,
        }
        for pooling, values in pooled.items():
            rows[pooling].update(zip(batch, values.float().numpy(), strict=True))
    return {pooling: np.stack([rows[pooling][text] for text in texts]) for pooling in POOLINGS}


def pair_features(u: np.ndarray, v: np.ndarray | None) -> np.ndarray:
    """u alone for one sentence; SentEval's (u, v, |u - v|, u * v) for a pair."""
    return u if v is None else np.concatenate([u, v, np.abs(u - v), u * v], axis=1)


def fit_predictor(task: str, features: np.ndarray, labels: np.ndarray):
    """A fitted scikit-learn predictor: logistic regression (C by 5-fold CV for the GLUE metric) or ridge."""
    if TASKS[task].is_regression:
        return make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS)).fit(features, labels)

    def glue_score(truth: np.ndarray, predicted: np.ndarray) -> float:
        return compute_metrics(task, predicted, truth)["score"]

    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    search = GridSearchCV(
        pipeline, {"logisticregression__C": C_GRID}, scoring=make_scorer(glue_score), cv=folds
    )
    return search.fit(features, labels.astype(np.int64))


def dev_scores(task: str, predictions: np.ndarray, labels: np.ndarray, caps: tuple[int, ...]) -> dict:
    """The dev metrics on the whole dev set ("all") and on its first N rows for each cap N."""
    scores = {"all": compute_metrics(task, predictions, labels)}
    for cap in caps:
        scores[str(cap)] = compute_metrics(task, predictions[:cap], labels[:cap])
    return scores


def probe_task(encoder, task: str, data_dir: str, train_rows: int, caps: tuple[int, ...]) -> dict:
    """Fit on one task's first training rows, per pooling; {pooling: {dev task: results}} (MNLI: m and mm)."""
    train = read_split(data_dir, task, "train", train_rows)

    def features(examples) -> dict[str, np.ndarray]:
        u = encoder(examples.text_a)
        v = encoder(examples.text_b) if examples.text_b is not None else dict.fromkeys(POOLINGS)
        return {pooling: pair_features(u[pooling], v[pooling]) for pooling in POOLINGS}

    labels = np.asarray(train.labels)
    train_features = features(train)
    predictors = {pooling: fit_predictor(task, train_features[pooling], labels) for pooling in POOLINGS}
    results: dict[str, dict] = {pooling: {} for pooling in POOLINGS}
    for dev_task in (t for t in DEV_TASKS if TASKS[t].head == task):
        dev = read_split(data_dir, dev_task, "dev")
        dev_features = features(dev)
        dev_labels = np.asarray(dev.labels)
        if not TASKS[task].is_regression:
            dev_labels = dev_labels.astype(np.int64)
        for pooling, predictor in predictors.items():
            predicted = predictor.predict(dev_features[pooling])
            results[pooling][dev_task] = {
                "train_rows": len(train),
                "dev_rows": len(dev),
                "C": getattr(predictor, "best_params_", {}).get("logisticregression__C"),
                "dev": dev_scores(dev_task, predicted, dev_labels, caps),
            }
    return results


def glue_averages(results: dict, caps: tuple[int, ...]) -> dict[str, float]:
    keys = ["all", *map(str, caps)]
    tasks = [t for t in GLUE_AVERAGE_TASKS if t in results]
    return {key: float(np.mean([results[t]["dev"][key]["score"] for t in tasks])) for key in keys}


def run_probe(
    data_dir: str, tasks: list[str], train_rows: int, max_length: int, caps: tuple[int, ...]
) -> dict:
    """The probe over ``tasks`` for both poolings: per pooling, each dev task's scores and the averages."""
    location = bundled_encoder_path()
    model = AutoModel.from_pretrained(location, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(location)
    started = time.perf_counter(), time.process_time()

    def encoder(texts: list[str]) -> dict[str, np.ndarray]:
        return encode(model, tokenizer, texts, max_length)

    results: dict[str, dict] = {pooling: {} for pooling in POOLINGS}
    for task in tasks:
        for pooling, task_results in probe_task(encoder, task, data_dir, train_rows, caps).items():
            results[pooling].update(task_results)
        print(f"[probe] {task} done", flush=True)
    settings = {
        "encoder": "all-MiniLM-L6-v2 (bundled), frozen",
        "train_rows": train_rows,
        "max_length": max_length,
        "caps": list(caps),
        "features": "u (one sentence); u, v, |u-v|, u*v (pairs)",
        "classifier": f"StandardScaler + LogisticRegression, C in {list(C_GRID)} by 5-fold CV on the GLUE "
        "metric; STS-B: StandardScaler + RidgeCV",
    }
    return {
        "settings": settings,
        "probes": {
            pooling: {"tasks": r, "glue_average": glue_averages(r, caps)} for pooling, r in results.items()
        },
        "wall_seconds": time.perf_counter() - started[0],
        "cpu_seconds": time.process_time() - started[1],
    }


def format_probe(result: dict, command: str) -> str:
    """probe.md: one row per pooling and dev-set size."""
    settings, probes = result["settings"], result["probes"]
    keys = ["all", *map(str, settings["caps"])]
    first = next(iter(probes.values()))
    tasks = [t for t in COLUMN_NAMES if t in first["tasks"]]
    header = ["pooling", "dev rows", *(COLUMN_NAMES[t] for t in tasks), "avg"]
    rows = []
    for pooling, probe in probes.items():
        for key in keys:
            label = "whole dev set" if key == "all" else f"first {key}"
            cells = [x100(probe["tasks"][t]["dev"][key]["score"]) for t in tasks]
            rows.append([pooling, label, *cells, f"**{x100(probe['glue_average'][key])}**"])
    lines = [
        "# The linear-probe floor: frozen bundled encoder, no fine-tuning",
        "",
        f"Features: {settings['features']}, mean-pooled or the [CLS] pooler; classifier: "
        f"{settings['classifier']}; fitted on the first {settings['train_rows']} training rows of each task, "
        f"sentences truncated to {settings['max_length']} tokens. Dev scores x100 (GLUE metrics: CoLA MCC, "
        "MRPC/QQP mean of F1 and accuracy, STS-B mean of Pearson and Spearman); avg = GLUE average without "
        "WNLI, MNLI-m and MNLI-mm counted separately. `mean` is the floor that runs are compared with.",
        "",
        *markdown_table(header, rows),
        "",
        "Made by:",
        "",
        f"    {command}",
        "",
        f"{result['cpu_seconds']:.0f} CPU seconds, {result['wall_seconds']:.0f} s wall-clock.",
    ]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data_dir", default="../shared/glue")
    parser.add_argument("--tasks", nargs="+", default=None, help="default: all nine")
    parser.add_argument("--train_rows", type=int, default=1000)
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--caps", type=int, nargs="*", default=list(DEFAULT_CAPS))
    parser.add_argument("--output", type=Path, default=Path("results/probe"), help="writes OUTPUT.json/.md")


def run(args: argparse.Namespace, command: str) -> None:
    if not Path(args.data_dir).is_dir():
        raise UsageError(f"--data_dir {args.data_dir} does not exist: point it at the GLUE folder")
    if args.train_rows < 10:
        raise UsageError(f"--train_rows must be at least 10 (5-fold cross-validation), got {args.train_rows}")
    tasks = resolve_tasks(args.tasks) if args.tasks else list(TRAINABLE_TASKS)
    result = run_probe(args.data_dir, tasks, args.train_rows, args.max_length, tuple(args.caps))
    result["command"] = command
    write_json(args.output.with_suffix(".json"), result)
    args.output.with_suffix(".md").write_text(format_probe(result, command))
    print(args.output.with_suffix(".md").read_text())


def load_floor(path: Path, cap: int | None, pooling: str = "mean") -> dict[str, float]:
    """The probe's dev score per task at ``--max_eval_samples cap`` (None: the whole dev set)."""
    if not path.is_file():
        raise UsageError(f"no probe results at {path}: run `python -m camtl.bench probe` first")
    probe = read_json(path)["probes"][pooling]
    scores = {}
    for task, result in probe["tasks"].items():
        key = "all" if cap is None or cap >= result["dev_rows"] else str(cap)
        if key not in result["dev"]:
            raise UsageError(
                f"{path} has no scores on the first {cap} dev rows: rerun the probe with --caps {cap}"
            )
        scores[task] = result["dev"][key]["score"]
    return scores


def rows_scored(path: Path, cap: int | None) -> dict[str, int]:
    """Dev rows each task is scored on at ``--max_eval_samples cap`` (its whole dev set when smaller)."""
    tasks = read_json(path)["probes"]["mean"]["tasks"]
    return {task: min(r["dev_rows"], cap or r["dev_rows"]) for task, r in tasks.items()}


def accuracy_interval(accuracy: float, rows: int) -> tuple[float, float]:
    """The 95% Wilson interval of an accuracy measured on ``rows`` dev rows (RTE's 277 rows span
    about +-6 points)."""
    interval = binomtest(round(accuracy * rows), rows).proportion_ci(0.95, method="wilson")
    return interval.low, interval.high


def margins(results: dict, floor: dict[str, float], rows: dict[str, int] | None = None) -> list[dict]:
    """Per dev task of a run's eval_results.json with a defined score: its score, the floor's, the margin
    and, for an accuracy scored on a known number of ``rows``, its 95% interval."""
    table = []
    for task in (t for t in DEV_TASKS if isinstance(results.get(t), dict) and t in floor):
        score = results[task]["score"]
        if score is None:  # undefined (eval_results.json says why): no margin to show
            continue
        row = {"task": task, "score": score, "floor": floor[task], "margin": score - floor[task]}
        if rows and task in rows and TASKS[task].primary_metric == "accuracy":
            row["interval"] = accuracy_interval(score, rows[task])
        table.append(row)
    return table


def format_margins(rows: list[dict], cap: int | None) -> str:
    dev = "whole dev sets" if cap is None else f"the first {cap} dev rows (whole when smaller)"
    lines = [f"margins over the linear-probe floor (results/probe.md, mean pooling), on {dev}:"]
    lines.append(f"{'task':<9}{'score':>8}{'floor':>8}{'margin':>9}  95% interval (accuracy)")
    for r in rows:
        flag = "" if r["margin"] > 0 or r["task"] == "wnli" else "below the floor"
        interval = "[{:.1f}, {:.1f}]".format(*(100 * x for x in r["interval"])) if "interval" in r else ""
        lines.append(
            f"{r['task']:<9}{100 * r['score']:>8.2f}{100 * r['floor']:>8.2f}{100 * r['margin']:>+9.2f}"
            f"  {interval:<24}{flag}".rstrip()
        )
    counted = [r for r in rows if r["task"] != "wnli"]
    above = sum(r["margin"] > 0 for r in counted)
    lines.append(f"above the floor on {above} of {len(counted)} tasks (WNLI not counted)")
    return "\n".join(lines)


def add_margin_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="a run.py --output_dir with eval_results.json")
    parser.add_argument(
        "--max_eval_samples",
        type=int,
        default=None,
        help="the run's --max_eval_samples (default: what its newest checkpoint recorded)",
    )
    parser.add_argument("--probe", type=Path, default=Path("results/probe.json"))


def read_run_results(results_file: Path) -> dict:
    """A run's eval_results.json, checked to hold a score per GLUE dev task."""
    if not results_file.is_file():
        raise UsageError(f"no {results_file}: run run.py with --do_eval into {results_file.parent} first")
    try:
        results = read_json(results_file)
    except (ValueError, UnicodeDecodeError):
        raise _not_run_results(results_file, "is not valid JSON") from None
    tasks = [t for t in DEV_TASKS if isinstance(results, dict) and isinstance(results.get(t), dict)]
    if not tasks:
        raise _not_run_results(results_file, "holds no GLUE dev task's scores")
    unscored = [t for t in tasks if "score" not in results[t]]
    if unscored:
        raise _not_run_results(results_file, f"has no score for {unscored[0]}")
    return results


def _not_run_results(results_file: Path, problem: str) -> UsageError:
    return UsageError(
        f"{results_file} {problem}: it is not the eval_results.json of a run.py --do_eval:"
        f" evaluate the run again (run.py --do_eval into {results_file.parent})"
    )


def check_dev_sets(run_dir: Path, data_dirs: list[str] | None, probe_file: Path, tasks: list[str]) -> None:
    """The run scored the dev sets the floor is scored on: each of its dev files (in the --data_dir its
    checkpoint recorded) has as many rows as the probe's. Skipped where that folder is gone."""
    probed = read_json(probe_file)["probes"]["mean"]["tasks"]
    for task in tasks:
        try:
            data_dir = task_data_dir(task, data_dirs)
        except UsageError:  # no --data_dir recorded, or the folders moved: nothing to compare with
            continue
        if not split_exists(data_dir, task, "dev"):
            continue
        rows, expected = len(read_split(data_dir, task, "dev")), probed[task]["dev_rows"]
        if rows != expected:
            raise UsageError(
                f"{run_dir} was evaluated on {split_path(data_dir, task, 'dev')} ({rows} rows), not on the"
                f" {task} dev set of {expected} rows that {probe_file} scores: margins compare runs on the"
                " GLUE dev sets the probe read"
            )


def run_margins(args: argparse.Namespace, command: str) -> None:
    """Print a run's margins over the floor; ``--max_eval_samples`` and the dev data default to what the
    run's newest checkpoint recorded."""
    results = read_run_results(args.run_dir / "eval_results.json")
    settings = recorded_run_settings(args.run_dir)
    if settings is None and args.max_eval_samples is None:
        raise UsageError(
            f"{args.run_dir} has no checkpoint with a readable {SETTINGS_FILE}, so its --max_eval_samples is"
            " unknown: give the run's --max_eval_samples N (one above every dev set's size for whole sets)"
        )
    settings = settings or {}
    cap = args.max_eval_samples if args.max_eval_samples is not None else settings.get("max_eval_samples")
    floor = load_floor(args.probe, cap)
    check_dev_sets(
        args.run_dir,
        settings.get("data_dir"),
        args.probe,
        [t for t in DEV_TASKS if t in floor and t in results],
    )
    rows = rows_scored(args.probe, cap)
    print(format_margins(margins(results, floor, rows), cap))
