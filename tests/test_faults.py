"""Fault injection: runs killed at twelve moments, each resumed with ``latest``, end bit-identical.

tests/fault_driver.py runs the same short training (MT-Uncertainty on two tasks, a checkpoint every
2 of 8 steps, at most 2 kept) uninterrupted, then once per moment below with a real SIGKILL at that
moment (SIGTERM for the last), then resumes each with --resume_from_checkpoint latest.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "glue"

# moment -> (how the interrupted run ends, the checkpoint that latest must resume from)
MOMENTS = {
    "mid-step-3": (-9, "checkpoint-2"),  # between the forward pass and the update
    "after-update-5": (-9, "checkpoint-4"),  # weights updated, step counter and schedule not
    "cut-weights-4": (-9, "checkpoint-2"),  # during a save: model.safetensors half written
    "cut-trainer-state-4": (-9, "checkpoint-2"),
    "cut-optimizer-6": (-9, "checkpoint-4"),
    "cut-sampling-state-8": (-9, "checkpoint-6"),
    "before-rename-6": (-9, "checkpoint-4"),  # complete with its marker, still under its temporary name
    "after-rename-4": (-9, "checkpoint-4"),  # right after a save
    "mid-rotation-2": (-9, "checkpoint-6"),  # --save_total_limit half way through deleting checkpoint-2
    "after-checkpoint-6": (-9, "checkpoint-6"),  # the step after a save begins
    "cut-final-weights": (-9, "checkpoint-8"),  # the final model half written
    "sigterm-5": (143, "checkpoint-5"),  # SIGTERM: the run saves where it is and exits with 143
}


@pytest.fixture(scope="module")
def faults(tiny_bert, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("faults")
    flags = [
        "--model_name_or_path", str(tiny_bert), "--layout", "base", "--data_dir", str(FIXTURES),
        "--output_dir", "{out}", "--features_cache_dir", str(work / "cache"), "--max_seq_length", "32",
        "--per_device_train_batch_size", "2", "--tasks", "rte", "sts-b", "--use_mt_uncertainty",
        "--do_train", "--max_steps", "8", "--save_steps", "2", "--save_total_limit", "2",
        "--report_to", "none", "--seed", "5", "--learning_rate", "1e-3",
    ]  # fmt: skip
    command = [sys.executable, str(REPO / "tests" / "fault_driver.py"), str(work), ",".join(MOMENTS), "--"]
    result = subprocess.run(command + flags, capture_output=True, text=True, cwd=REPO, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return work


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_a_killed_run_resumed_with_latest_ends_bit_identical(faults, moment):
    report = json.loads((faults / "report.json").read_text())
    ending, checkpoint = MOMENTS[moment]
    assert report["reference"]["reference"] == 0, (faults / "reference.log").read_text()[-3000:]
    assert report["first"][moment] == ending, (faults / f"{moment}.log").read_text()[-3000:]
    log = (faults / f"{moment}-resumed.log").read_text()
    assert report["resumed"][f"{moment}-resumed"] == 0, log[-3000:]
    assert re.findall(r"resuming from (\S+), the newest complete checkpoint", log) == [
        str(faults / moment / checkpoint)
    ]
    expected = load_file(faults / "reference" / "model.safetensors")
    actual = load_file(faults / moment / "model.safetensors")
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[k], actual[k]) for k in expected)
    usage = [json.loads((faults / d / "sampling_summary.json").read_text()) for d in ("reference", moment)]
    assert {k: v for k, v in usage[0].items() if "seconds" not in k} == {
        k: v for k, v in usage[1].items() if "seconds" not in k
    }
    assert not list((faults / moment).glob("tmp-*"))  # no temporary folder outlives the resumed run


def test_the_sigterm_run_says_where_it_saved(faults):
    last = (faults / "sigterm-5.log").read_text().strip().splitlines()[-1]
    assert last == (
        f"error: terminated (SIGTERM) during training: {faults / 'sigterm-5' / 'checkpoint-5'} is the newest"
        " complete checkpoint: continue with --resume_from_checkpoint latest"
    )
    assert "Traceback" not in (faults / "sigterm-5.log").read_text()
