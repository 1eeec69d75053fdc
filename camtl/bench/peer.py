"""``python -m camtl.bench peer``: camtl against the stock Hugging Face recipe on one single-task job.

The job: SST-2 on the bundled encoder, 200 steps of 32, lr 5e-5, seed 12, 2 threads, dev accuracy on
the whole dev set. The peer is what an HF user writes: ``AutoModelForSequenceClassification`` +
``Trainer`` + ``DataCollatorWithPadding``, in fp32 and with ``TrainingArguments(bf16=True)``. camtl runs
``run.py`` on the same job: its default (precision auto, length-grouped batches), the Trainer's setting
(fp32, random batches), bf16, and CA-MTL-mini. Every run is a fresh process, run once in the order
listed, the order reversed in a second pass (``--passes 2``, the default), so that neither side always
runs first; each time is ``train_runtime`` (the Trainer's own clock). Results in ``results/peer.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from camtl.bench.common import (
    DEFAULT_BACKBONE,
    REPO_ROOT,
    execute,
    logged_metric,
    markdown_table,
    read_json,
    replace_flags,
    write_json,
)
from camtl.training.precision import cpu_name, this_cpu

JOB = {"task": "sst-2", "steps": 200, "batch_size": 32, "learning_rate": 5e-5, "seed": 12, "threads": 2,
       "max_train": None, "max_eval": None}  # fmt: skip
QUICK_JOB = {**JOB, "steps": 3, "batch_size": 4, "max_train": 64, "max_eval": 16}
# contender -> run.py flag values that replace the job's ("hf-trainer-*" run the stock recipe instead)
CONTENDERS = {
    "hf-trainer-fp32": None,
    "hf-trainer-bf16": None,
    "camtl-default": {},
    "camtl-fp32-random": {"precision": "fp32", "train_sampling_strategy": "random"},
    "camtl-bf16": {"precision": "bf16"},
    "ca-mtl-mini": {"model_name_or_path": "CA-MTL-mini"},
}
BF16_CONTENDERS = ("hf-trainer-bf16", "camtl-bf16")


def hf_recipe(data_dir: str, job: dict, bf16: bool, output_dir: str) -> dict:
    """The stock recipe, run in this process: train, then predict the dev set. Prints nothing."""
    import numpy as np
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from camtl.data import read_split
    from camtl.model.presets import bundled_encoder_path

    tokenizer = AutoTokenizer.from_pretrained(bundled_encoder_path())
    model = AutoModelForSequenceClassification.from_pretrained(bundled_encoder_path(), num_labels=2)

    def dataset(split: str, limit: int | None) -> Dataset:
        rows = read_split(data_dir, job["task"], split, limit)
        encoded = tokenizer(rows.text_a, truncation=True, max_length=128)
        return Dataset.from_dict({**encoded, "labels": [int(label) for label in rows.labels]})

    args = TrainingArguments(
        output_dir=output_dir, max_steps=job["steps"], per_device_train_batch_size=job["batch_size"],
        learning_rate=job["learning_rate"], seed=job["seed"], bf16=bf16, use_cpu=True, report_to="none",
        save_strategy="no", logging_steps=max(1, job["steps"] // 4),
    )  # fmt: skip
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset("train", job["max_train"]),
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    trained = trainer.train()
    dev = dataset("dev", job["max_eval"])
    predicted = trainer.predict(dev)
    accuracy = float(np.mean(predicted.predictions.argmax(-1) == np.asarray(dev["labels"])))
    return {"train_runtime": trained.metrics["train_runtime"], "train_loss": trained.training_loss,
            "dev_accuracy": accuracy}  # fmt: skip


def run_hf(name: str, data_dir: str, job: dict, work_dir: Path) -> dict:
    call = f"hf_recipe({data_dir!r}, {job!r}, {name.endswith('bf16')}, {str(work_dir / name)!r})"
    code = f"import json; from camtl.bench.peer import hf_recipe; print(json.dumps({call}))"
    env = {**os.environ, "OMP_NUM_THREADS": str(job["threads"])}
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, env=env, check=False
    )
    if child.returncode != 0:
        raise RuntimeError(f"the HF recipe ({name}) failed:\n{child.stderr[-2000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def run_camtl(name: str, data_dir: str, job: dict, work_dir: Path) -> dict:
    output_dir = work_dir / name
    flags = [
        "--model_name_or_path", DEFAULT_BACKBONE, "--data_dir", data_dir, "--output_dir", output_dir,
        "--tasks", job["task"], "--do_train", "--do_eval", "--max_steps", job["steps"],
        "--per_device_train_batch_size", job["batch_size"], "--learning_rate", job["learning_rate"],
        "--seed", job["seed"], "--save_strategy", "no", "--report_to", "none",
        "--logging_steps", max(1, job["steps"] // 4),
    ]  # fmt: skip
    flags = list(replace_flags(tuple(flags), **CONTENDERS[name]))
    for limit, flag in ((job["max_train"], "--max_train_samples"), (job["max_eval"], "--max_eval_samples")):
        if limit:
            flags += [flag, limit]
    execute(flags, output_dir, job["threads"])
    results = read_json(output_dir / "eval_results.json")
    return {
        "train_runtime": logged_metric(output_dir, "train_runtime"),
        "train_loss": logged_metric(output_dir, "train_loss"),
        "dev_accuracy": results[job["task"]]["accuracy"],
    }


def measure(data_dir: str, job: dict, passes: int) -> dict:
    names = [n for n in CONTENDERS if this_cpu().native_bf16 or n not in BF16_CONTENDERS]
    runs: dict[str, list[dict]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="camtl-peer-") as temp:
        for index in range(passes):
            for name in names if index % 2 == 0 else names[::-1]:
                run = run_hf if CONTENDERS[name] is None else run_camtl
                runs[name].append(run(name, data_dir, job, Path(temp)))
    median = {name: statistics.median(r["train_runtime"] for r in rs) for name, rs in runs.items()}
    ratios = {"hf_default_vs_camtl_default": median["hf-trainer-fp32"] / median["camtl-default"]}
    if "camtl-bf16" in median:
        ratios["hf_bf16_vs_camtl_bf16"] = median["hf-trainer-bf16"] / median["camtl-bf16"]
    return {"cpu": cpu_name(), "job": job, "passes": passes, "runs": runs, "median_train_runtime": median,
            "ratios": ratios, "bf16_measured": "camtl-bf16" in median}  # fmt: skip


def format_report(result: dict, command: str) -> str:
    job = result["job"]
    rows = []
    for name, runs in result["runs"].items():
        losses = " / ".join(f"{r['train_loss']:.4f}" for r in runs)
        accuracies = " / ".join(f"{100 * r['dev_accuracy']:.2f}" for r in runs)
        rows.append([name, f"{result['median_train_runtime'][name]:.1f}", losses, accuracies])
    lines = [
        "# camtl against the stock Hugging Face Trainer recipe", "",
        f"{job['task']}, {job['steps']} steps of {job['batch_size']}, lr {job['learning_rate']:g},"
        f" seed {job['seed']}, {job['threads']} threads, on {result['cpu']}; {result['passes']} pass(es),"
        " each contender once per pass; train_runtime in seconds (median over passes), train loss and dev"
        " accuracy per pass.", "",
        *markdown_table(["contender", "train_runtime s", "train loss", "dev accuracy"], rows), "",
        *(f"- {name}: **{value:.2f}**" for name, value in result["ratios"].items()),
    ]  # fmt: skip
    if not result["bf16_measured"]:
        lines.append("- no native bf16 on this CPU: the bf16 contenders were not run")
    lines += ["", "Made by:", "", f"    {command}"]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick", action="store_true", help="3 steps of 4, 64 training and 16 dev rows: a smoke run"
    )
    parser.add_argument("--passes", type=int, default=2, help="passes over the contenders (order reversed)")
    parser.add_argument("--data_dir", default="../shared/glue", help="GLUE folder")
    parser.add_argument("--output", type=Path, default=None, help="default results/peer.md")


def run(args: argparse.Namespace, command: str) -> None:
    job = QUICK_JOB if args.quick else JOB
    result = measure(args.data_dir, job, args.passes)
    output = args.output or Path("output/peer-quick.md" if args.quick else "results/peer.md")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(format_report(result, command))
    write_json(output.with_suffix(".json"), result)
    print(output.read_text(), end="")
