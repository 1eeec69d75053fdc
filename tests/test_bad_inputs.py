"""The bad-input catalogue: run.py answers every bad input with one line and exit code 2.

Each case runs run.py in a process of its own whose --output_dir holds the results of an earlier run:
``python run.py`` for cases with an environment or a wrapper of their own, otherwise a child forked from
one process that imported run.py once (tests/forked_runs.py), which saves most of the start-up time.
The answer must come before any heavy work: exit code 2, stderr exactly one line ``error: ...`` that
names the problem and the fix, no traceback, nothing on stdout, the earlier results untouched, nothing
new in --output_dir (no checkpoint, no runs/) and no feature cache. The subprocesses run in parallel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from bad_input_setups import (
    EARLIER_RESULTS,
    FULL_DISK,
    READ_ONLY,
    ROOT,
    Setup,
    Sources,
    append_row,
    assert_refused,
    damaged_data,
    read_only_dir,
    run_forked,
    trained_run,
    truncate,
    truncated_checkpoint_weights,
    write,
    zero_middle,
)

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "glue"


def flags(*extra: str, **options: str | None) -> list[str]:
    """A run on RTE with the tiny model; ``options`` replace a flag's value (None drops the flag), ``extra``
    are added. {placeholders} are filled per case by ``run_case``."""
    values = {
        "model_name_or_path": "{tiny_bert}",
        "layout": "base",
        "data_dir": "{fixtures}",
        "output_dir": "{out}",
        "features_cache_dir": "{cache}",
        "max_seq_length": "32",
        "tasks": "rte",
        "report_to": "none",
    } | options
    named = [part for name, value in values.items() if value is not None for part in (f"--{name}", value)]
    return named + list(extra)


def evaluate(*extra: str, **options: str | None) -> list[str]:
    return flags("--do_eval", *extra, **options)


def train(*extra: str, **options: str | None) -> list[str]:
    """Training flags; --overwrite_output_dir gets past the earlier results: the case's own check answers."""
    return flags("--do_train", "--overwrite_output_dir", "--max_steps", "2", *extra, **options)


@dataclass(frozen=True)
class Case:
    argv: list[str]
    expect: str  # a distinctive part of the answer: the flag or file it names, or the fix
    setup: Setup | None = None
    env: dict[str, str | None] = field(default_factory=dict)  # None removes the variable
    wrap: list[str] | None = None  # a command that runs ``python run.py ...`` given as its arguments


# An empty Hugging Face cache and no proxy: bert-base-cased can only come from the hub.
NO_HUB = {
    "HF_HOME": "{work}/hf-home",
    "HF_HUB_CACHE": None,
    "TRANSFORMERS_CACHE": None,
    "HF_HUB_OFFLINE": None,
    "TRANSFORMERS_OFFLINE": None,
    "HTTPS_PROXY": None,
    "https_proxy": None,
}

CASES = {
    # The command line and the config file
    "no --do_* action": Case(flags(), "add --do_train, --do_eval and/or --do_predict"),
    "unknown flag": Case(evaluate("--use_mt_uncertanity"), "unrecognized arguments: --use_mt_uncertanity"),
    "missing --model_name_or_path": Case(evaluate(model_name_or_path=None), "--model_name_or_path"),
    "negative --learning_rate": Case(train("--learning_rate=-2e-5"), "--learning_rate must be"),
    "--per_device_train_batch_size 0": Case(
        train("--per_device_train_batch_size", "0"), "--per_device_train_batch_size must be positive"
    ),
    "--num_train_epochs 0": Case(
        flags("--do_train", "--overwrite_output_dir", "--num_train_epochs", "0"), "--num_train_epochs must be"
    ),
    "negative --seed": Case(train("--seed", "-1"), "--seed must be in"),
    "--fp16 without a GPU": Case(
        train("--fp16"), "--fp16 needs a CUDA GPU", env={"CUDA_VISIBLE_DEVICES": ""}
    ),
    "--report_to an integration that is not installed": Case(
        train(report_to="wandb"), "use --report_to none"
    ),
    "unreadable config JSON": Case(
        ["{work}/config.json"], "config.json cannot be read (", write("config.json", "{do_eval")
    ),
    "config file followed by flags": Case(
        ["{work}/config.json", "--do_eval"], "move --do_eval into", write("config.json", '{"do_eval": true}')
    ),
    "--max_grad_norm nan": Case(train("--max_grad_norm", "nan"), "--max_grad_norm must be a finite number"),
    "--weight_decay nan": Case(train("--weight_decay", "nan"), "--weight_decay must be a finite number"),
    "--adam_beta2 1": Case(train("--adam_beta2", "1"), "--adam_beta2 must be in [0, 1)"),
    "--adam_epsilon 0": Case(train("--adam_epsilon", "0"), "--adam_epsilon must be a finite number > 0"),
    "--save_steps 0": Case(train("--save_steps", "0"), "--save_steps must be positive"),
    "--save_total_limit 0": Case(train("--save_total_limit", "0"), "--save_total_limit must be positive"),
    "--load_best_model_at_end": Case(train("--load_best_model_at_end"), "--load_best_model_at_end is not"),
    "config value of the wrong type": Case(
        ["{work}/config.json"],
        "key 'learning_rate': expected a number, got \"fast\"",
        write("config.json", '{"do_train": true, "learning_rate": "fast"}'),
    ),
    "config with an unknown key": Case(
        ["{work}/config.json"], "unknown key 'lerning_rate'", write("config.json", '{"lerning_rate": 1}')
    ),
    # Task sampling
    "conflicting samplers": Case(
        train("--task_sampling", "uniform", "--use_mt_uncertainty"), "conflicts with --use_mt_uncertainty"
    ),
    "--sampling_temperature 0": Case(
        train("--task_sampling", "temperature", "--sampling_temperature", "0"), "--sampling_temperature"
    ),
    # Tasks and data
    "unknown task": Case(evaluate(tasks="rtee"), "unknown task 'rtee'"),
    "training on mnli-mm": Case(train(tasks="mnli-mm"), "use 'mnli'"),
    "--tasks naming no task": Case(evaluate(tasks=","), "--tasks names no task"),
    "missing --data_dir": Case(evaluate(data_dir="{work}/glue"), "glue does not exist: get GLUE with"),
    "empty --data_dir": Case(
        evaluate(data_dir="{work}/glue"), "is empty", lambda work, sources: (work / "glue").mkdir()
    ),
    "missing dev split for --do_eval": Case(
        evaluate(data_dir="{work}/data"), "RTE/dev.tsv", damaged_data("RTE/dev.tsv", Path.unlink)
    ),
    "training file with a header only": Case(
        train(data_dir="{work}/data"),
        "RTE/train.tsv has no usable training row",
        damaged_data(
            "RTE/train.tsv", lambda path: path.write_bytes(path.read_bytes().split(b"\n")[0] + b"\n")
        ),
    ),
    "malformed dev row": Case(
        evaluate(data_dir="{work}/data"),
        "RTE/dev.tsv:14 has 2 columns",
        damaged_data("RTE/dev.tsv", append_row("99\tone sentence only")),
    ),
    "dev label outside the label set": Case(
        evaluate(data_dir="{work}/data"),
        "has label 'maybe'",
        damaged_data("RTE/dev.tsv", append_row("99\tA man sleeps.\tSomeone sleeps.\tmaybe")),
    ),
    "malformed test row with --do_predict": Case(
        flags("--do_predict", data_dir="{work}/data"),
        "RTE/test.tsv:12 has 4 columns",
        damaged_data("RTE/test.tsv", append_row("99\tone\ttwo\tthree")),
    ),
    "dev file with a row that is not UTF-8": Case(
        evaluate(data_dir="{work}/data"),
        "RTE/dev.tsv:14 is not valid UTF-8 (byte 0xe9",
        damaged_data(
            "RTE/dev.tsv", lambda path: path.write_bytes(path.read_bytes() + b"99\tcaf\xe9\tx\tentailment\n")
        ),
    ),
    "dev file in UTF-16": Case(
        evaluate(data_dir="{work}/data"),
        "RTE/dev.tsv is UTF-16 encoded",
        damaged_data("RTE/dev.tsv", lambda path: path.write_bytes(path.read_text().encode("utf-16"))),
    ),
    "dev file with a header only": Case(
        evaluate(data_dir="{work}/data"),
        "RTE/dev.tsv has a header but no rows",
        damaged_data("RTE/dev.tsv", lambda path: path.write_bytes(path.read_bytes().split(b"\n")[0] + b"\n")),
    ),
    "test file with a header only, with --do_predict": Case(
        flags("--do_predict", data_dir="{work}/data"),
        "RTE/test.tsv has a header but no rows",
        damaged_data(
            "RTE/test.tsv", lambda path: path.write_bytes(path.read_bytes().split(b"\n")[0] + b"\n")
        ),
    ),
    "dev header with fewer columns than the task reads": Case(
        evaluate(data_dir="{work}/data"),
        "RTE/dev.tsv:1 has a header of 2 columns, expected at least 4",
        damaged_data("RTE/dev.tsv", lambda path: path.write_text("index\tsentence1\n0\tA man.\n")),
    ),
    # The model
    "hub name, hub unreachable": Case(
        evaluate(model_name_or_path="bert-base-cased"),
        "CA-MTL-mini",
        env=NO_HUB | {"HF_ENDPOINT": "https://hub.invalid"},  # .invalid never resolves (RFC 6761)
    ),
    "hub name with HF_HUB_OFFLINE=1": Case(
        evaluate(model_name_or_path="bert-base-cased"), "CA-MTL-mini", env=NO_HUB | {"HF_HUB_OFFLINE": "1"}
    ),
    "model path that does not exist": Case(
        evaluate(model_name_or_path="{work}/my-model"), "my-model' does not exist"
    ),
    "directory that is not a checkpoint": Case(
        evaluate(model_name_or_path="{work}"), "neither a camtl checkpoint nor a model directory"
    ),
    "model of an unsupported type": Case(
        evaluate(model_name_or_path="{work}/gpt2"),
        "model type 'gpt2' is not supported: camtl conditions BERT, RoBERTa",
        write("gpt2/config.json", '{"model_type": "gpt2"}'),
    ),
    "checkpoint of camtl 0.1": Case(
        evaluate(model_name_or_path="{work}/old", tasks=None),
        "was saved by camtl 0.1",
        write("old/config.json", '{"model_type": "camtl", "layout": "base", "backbone": {}}'),
    ),
    "architecture option that differs from the checkpoint's": Case(
        evaluate("--attention_film", "per_block", model_name_or_path="{checkpoint}", tasks=None),
        "has attention_film='shared', not 'per_block'",
    ),
    "checkpoint trained on other tasks": Case(
        evaluate(model_name_or_path="{checkpoint}", tasks="cola"), "was trained on tasks"
    ),
    "truncated model.safetensors": Case(
        evaluate(model_name_or_path="{work}/checkpoint", tasks=None),
        "the checkpoint is damaged",
        truncated_checkpoint_weights,
    ),
    "unknown --layout": Case(evaluate(layout="huge"), "unknown layout 'huge'"),
    "--freeze_encoder_layers malformed": Case(train("--freeze_encoder_layers", "0to4"), "write it as a-b"),
    "--freeze_encoder_layers reversed": Case(train("--freeze_encoder_layers", "4-0"), "write 0-4"),
    "--freeze_encoder_layers outside the model": Case(
        train("--freeze_encoder_layers", "0-11"), "outside this encoder's layers 0-3"
    ),
    "--max_seq_length above the position limit": Case(
        evaluate(max_seq_length="512"), "use --max_seq_length 128 or less"
    ),
    # Output and resume
    "non-empty --output_dir": Case(flags("--do_train"), "add --overwrite_output_dir"),
    "--output_dir is a file": Case(
        evaluate(output_dir="{work}/results.txt"), "results.txt is a file", write("results.txt", "")
    ),
    "--resume_from_checkpoint to a non-checkpoint": Case(
        train("--resume_from_checkpoint", "{work}"), "not a training checkpoint"
    ),
    "--resume_from_checkpoint latest without one": Case(
        train("--resume_from_checkpoint", "latest"), "no checkpoint-N folder"
    ),
    "--output_dir inside a file": Case(
        evaluate(output_dir="{work}/results.txt/out"),
        "results.txt is a file, not a directory",
        write("results.txt", ""),
    ),
    "--output_dir on a read-only file system": Case(
        train(output_dir="{work}/ro/out"),
        "is not writable (permission denied" if not ROOT else "is on a read-only file system",
        read_only_dir,
        wrap=READ_ONLY if ROOT else None,
    ),
    "--output_dir on a full disk": Case(
        train(output_dir="{work}/full/out"),
        "has no space left on its device",
        lambda work, sources: (work / "full").mkdir(),
        wrap=FULL_DISK,
    ),
    "--resume_from_checkpoint with a piece missing": Case(
        train("--resume_from_checkpoint", "{work}/run/checkpoint-2"),
        "checkpoint-2 is incomplete or damaged: optimizer.pt is missing: resume from",
        trained_run(lambda run: (run / "checkpoint-2" / "optimizer.pt").unlink()),
    ),
    "--resume_from_checkpoint with a damaged piece": Case(
        train("--resume_from_checkpoint", "{work}/run/checkpoint-2"),
        "optimizer.pt is damaged",
        trained_run(lambda run: zero_middle(run / "checkpoint-2" / "optimizer.pt")),
    ),
    "--resume_from_checkpoint latest, no complete checkpoint": Case(
        train("--resume_from_checkpoint", "latest", output_dir="{work}/run"),
        "no complete checkpoint of this run",
        trained_run(lambda run: [(c / "camtl_checkpoint.json").unlink() for c in run.glob("checkpoint-*")]),
    ),
    "--resume_from_checkpoint of another folder into one holding a run": Case(
        flags(
            "--do_train",
            "--max_steps",
            "2",
            "--resume_from_checkpoint",
            "{work}/run/checkpoint-2",
            output_dir="{work}/other",
        ),
        "other is not empty: add --overwrite_output_dir",
        lambda work, sources: (trained_run()(work, sources), write("other/notes.txt", "mine")(work, sources)),
    ),  # fmt: skip
    "resume with another --seed": Case(
        train("--resume_from_checkpoint", "{work}/run/checkpoint-2", "--seed", "3"),
        "was trained with --seed 42 (now 3)",
        trained_run(),
    ),
}


def run_run_py(
    argv: list[str], env: dict[str, str | None], wrap: list[str] | None = None
) -> subprocess.CompletedProcess:
    environment = dict(os.environ)
    for name, value in env.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    command = [*(wrap or []), sys.executable, "run.py", *argv]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=environment, timeout=300)


def prepare_case(case: Case, work: Path, tiny_bert: Path, sources: Sources) -> tuple[list, dict, list | None]:
    """Set ``work`` up for one case (its out/ holds an earlier run's eval_results.json); its command line,
    environment and wrapper with the placeholders filled."""
    (work / "out").mkdir(parents=True)
    (work / "out" / "eval_results.json").write_bytes(EARLIER_RESULTS)
    if case.setup:
        case.setup(work, sources)
    places = {
        "work": work,
        "out": work / "out",
        "cache": work / "cache",
        "fixtures": FIXTURES,
        "tiny_bert": tiny_bert,
        "checkpoint": sources.checkpoint,
    }
    argv = [part.format(**places) for part in case.argv]
    env = {name: value if value is None else value.format(**places) for name, value in case.env.items()}
    wrap = [part.format(**places) for part in case.wrap] if case.wrap else None
    return argv, env, wrap


def evaluate_twice_with_a_corrupt_cache(work: Path, tiny_bert: Path) -> list[subprocess.CompletedProcess]:
    """A cheap evaluation fills the feature cache; the cache file loses its second half; the same again."""

    def evaluation(output: str) -> subprocess.CompletedProcess:
        places = {"out": work / output, "cache": work / "cache", "fixtures": FIXTURES, "tiny_bert": tiny_bert}
        return run_run_py([part.format(**places) for part in evaluate("--max_eval_samples", "3")], {})

    first = evaluation("first")
    for cache_file in (work / "cache").glob("*.pt"):
        truncate(cache_file)
    return [first, evaluation("second")]


@pytest.fixture(scope="module")
def checkpoint(tiny_bert, tmp_path_factory) -> Path:
    """A camtl checkpoint of the tiny model: tasks rte and sst-2, base layout, max_seq_length 32."""
    from transformers import AutoTokenizer

    from camtl.model import load_model

    path = tmp_path_factory.mktemp("checkpoint")
    load_model(str(tiny_bert), ["rte", "sst-2"], layout="base", max_seq_length=32).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def trained(tiny_bert, tmp_path_factory) -> Path:
    """A 2-step training run with the flags of ``train()`` (so only a case's own change differs)."""
    root = tmp_path_factory.mktemp("trained")
    places = {"out": root / "run", "cache": root / "cache", "fixtures": FIXTURES, "tiny_bert": tiny_bert}
    result = run_run_py([part.format(**places) for part in train("--save_steps", "1")], {})
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "run"


@pytest.fixture(scope="module")
def answers(tiny_bert, checkpoint, trained, tmp_path_factory) -> dict:
    """Every case's finished run (and the corrupt-cache runs), keyed by name, with its directory. Cases with
    an environment or a wrapper of their own run as ``python run.py``; the others, forked."""
    root = tmp_path_factory.mktemp("bad-inputs")
    sources = Sources(checkpoint=checkpoint, trained=trained)
    works = {name: root / f"case-{index}" for index, name in enumerate(CASES)}
    commands = {name: prepare_case(CASES[name], works[name], tiny_bert, sources) for name in CASES}
    own_process = {name for name, (_, env, wrap) in commands.items() if env or wrap}
    with ThreadPoolExecutor(max_workers=4) as pool:
        corrupt_cache = pool.submit(evaluate_twice_with_a_corrupt_cache, root / "corrupt-cache", tiny_bert)
        futures = {name: pool.submit(run_run_py, *commands[name]) for name in own_process}
        forked = run_forked(
            {n: argv for n, (argv, _, _) in commands.items() if n not in own_process}, root / "logs"
        )
        results = forked | {name: future.result() for name, future in futures.items()}
        answers = {name: (works[name], results[name]) for name in CASES}
        answers["corrupt cache"] = (root / "corrupt-cache", corrupt_cache.result())
    return answers


def test_the_catalogue_covers_at_least_30_bad_inputs():
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_one_line_and_exit_code_2_before_any_output(name, answers):
    work, result = answers[name]
    assert_refused(work, result, CASES[name].expect)


def test_corrupt_feature_cache_is_rebuilt_with_a_warning(answers):
    work, (first, second) = answers["corrupt cache"]
    assert first.returncode == 0, first.stderr[-3000:]
    assert second.returncode == 0, second.stderr[-3000:]
    assert not any("corrupt" in line for line in first.stderr.splitlines())
    warnings = [line for line in second.stderr.splitlines() if "corrupt" in line and "rebuilding" in line]
    assert len(warnings) == 1
    assert set(json.loads((work / "second" / "eval_results.json").read_text())) == {"rte", "glue_average"}
    (cache_file,) = (work / "cache").glob("*.pt")
    assert len(torch.load(cache_file, weights_only=True)["ids"]) == 3
