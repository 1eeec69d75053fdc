"""Flags whose explicit value must not be taken for the default (issue 23, category 8).

``--warmup_steps 0`` means no warmup (0 is also transformers' "not given", which camtl reads as 10%), and
no fraction of warmup, the default 10% included, spends a short run's only warmup step at learning rate
0: a 1-step run changes the weights.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import run
from camtl.errors import UsageError
from camtl.training.schedule import warmup_steps

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "glue"
BASE = [
    "--model_name_or_path",
    "x",
    "--data_dir",
    "x",
    "--output_dir",
    "/tmp/unused",
    "--do_train",
    "--report_to",
    "none",
]

# flags -> {number of training steps: warmup steps}
WARMUP = {
    "default (10%)": ([], {1: 0, 5: 0, 10: 0, 11: 2, 20: 2, 1000: 100}),
    "--warmup_steps 0": (["--warmup_steps", "0"], {1: 0, 10: 0, 1000: 0}),
    "--warmup_steps=0.0": (["--warmup_steps=0.0"], {1000: 0}),
    "--warmup_steps 3": (["--warmup_steps", "3"], {1: 3, 1000: 3}),
    "--warmup_steps 1 (asked for)": (["--warmup_steps", "1"], {1: 1, 1000: 1}),
    "--warmup_proportion 0.25": (["--warmup_proportion", "0.25"], {2: 0, 8: 2, 100: 25}),
    "--warmup_proportion 0": (["--warmup_proportion", "0"], {1000: 0}),
    "--warmup_steps 0 given twice": (["--warmup_steps", "0", "--warmup_steps", "0"], {1000: 0}),
}


@pytest.mark.parametrize("name", list(WARMUP))
def test_warmup_is_what_the_flags_say(name):
    extra, expected = WARMUP[name]
    _, _, args = run.parse_arguments(BASE + extra)
    assert {steps: warmup_steps(args, steps) for steps in expected} == expected


# An explicit 0 that a check once read as "not given" -> what run.py answers before the model loads.
ZEROS = {
    "--attention_blocks 0 (0 == False)": (
        ["--attention_blocks", "0"],
        "--attention_blocks 0 must lie in 1..",
    ),
    "--max_steps 0 (the Trainer trained 1 step)": (
        ["--max_steps", "0"],
        "--max_steps must be positive (or -1 to train --num_train_epochs), got 0",
    ),
}


@pytest.mark.parametrize("name", list(ZEROS))
def test_a_zero_is_checked_not_taken_for_the_default(name):
    extra, message = ZEROS[name]
    with pytest.raises(UsageError, match=re.escape(message)):
        model_args, data_args, _ = run.parse_arguments(BASE + extra)
        model_args.check_model_options(["rte"], 128)


@pytest.mark.parametrize("extra", [[], ["--warmup_steps", "0"]])
def test_a_one_step_run_changes_the_weights(extra, tiny_bert, tmp_path):
    out = tmp_path / "out"
    run.main([
        "--model_name_or_path", str(tiny_bert), "--layout", "base", "--data_dir", str(FIXTURES),
        "--tasks", "rte", "--output_dir", str(out), "--features_cache_dir", str(tmp_path / "cache"),
        "--max_seq_length", "32", "--max_steps", "1", "--report_to", "none", "--do_train",
        "--learning_rate", "1e-2", "--logging_steps", "1", *extra,
    ])  # fmt: skip
    trained = load_file(out / "model.safetensors")
    initial = load_file(tiny_bert / "model.safetensors")
    layer = "encoder.layer.0.attention.self.query.weight"
    (key,) = [k for k in trained if k.endswith(layer)]
    assert not torch.equal(trained[key], initial[layer])
