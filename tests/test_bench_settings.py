"""glue-mini's settings are checked before study.json binds the output folder to them and before any run:
its own rules (finite positive numbers, seeds and contenders named once) and, through each queued run's
run.py flags, every check run.py makes of a value (tests/test_bench.py runs the study end to end)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from camtl.bench import study, study_plan
from camtl.errors import UsageError

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "glue"


def quick_args(tiny_bert, tmp_path, *flags) -> list[str]:
    return [
        "--quick", "--data_dir", str(FIXTURES), "--backbone", str(tiny_bert), "--output",
        str(tmp_path / "results"), "--work_dir", str(tmp_path / "work"), "--features_cache_dir",
        str(tmp_path / "cache"), "--tasks", "rte", "--contenders", "ca-mtl", *flags,
    ]  # fmt: skip


@pytest.fixture
def threads():
    """settings_from sets the study's thread count on this process: put it back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--learning_rate", "nan"], "--learning_rate must be a finite positive number, got nan"),
        (["--learning_rate", "inf"], "--learning_rate must be a finite positive number, got inf"),
        (["--sampling_temperature", "-1"], "--sampling_temperature must be a finite positive number"),
        (["--seeds", "-1"], "--seeds must be 0 or more, got -1"),
        (["--seeds", "1", "2", "1"], "--seeds names 1 more than once: name each once"),
        (["--contenders", "ca-mtl", "vanilla", "ca-mtl"], "--contenders names ca-mtl more than once"),
        (["--workers", "0"], "--workers must be 1 or more"),
        (["--max_seq_length", "1"], "--max_seq_length must be above 2 and at most"),
        # the tiny BERT has 128 positions
        (["--max_seq_length", "4096"], "position embeddings (128), got 4096"),
        # refused by run.py's own checks, reached through the run's flags
        (["--task_sampling", "bogus"], "unknown --task_sampling 'bogus': choose from proportional"),
        (["--seeds", str(2**32)], f"--seed must be in 0..{2**32 - 1}, got {2**32} (in run.py's flags for"),
    ],
)
def test_bad_settings_are_refused_before_the_study_binds_its_folder(
    flags, expected, tiny_bert, tmp_path, threads
):
    parser = study.argparse.ArgumentParser()
    study.add_arguments(parser)
    args = parser.parse_args(quick_args(tiny_bert, tmp_path, *flags))
    with pytest.raises(UsageError) as error:
        study.run(args, "glue-mini")
    assert expected in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "results").exists() and not (tmp_path / "work").exists()


def test_every_contender_s_flags_pass_run_py_s_checks_at_the_quick_settings(tiny_bert, tmp_path):
    values = {**study_plan.QUICK, "precision": "fp32", "max_seq_length": 128}  # the backbone's limit
    settings = study_plan.Settings(data_dir=str(FIXTURES), backbone=str(tiny_bert), tasks=("rte",), **values)
    before = os.environ.get("TENSORBOARD_LOGGING_DIR")
    study_plan.check_runs(
        settings, [0, 7], list(study_plan.CONTENDERS), tmp_path / "work", tmp_path / "cache"
    )
    assert os.environ.get("TENSORBOARD_LOGGING_DIR") == before  # parsing leaves the process as it was
    assert not any(tmp_path.iterdir())


def test_the_full_study_s_flags_pass_with_the_bundled_encoder_named_not_a_path(tmp_path):
    tasks = ("cola", "sst-2", "mrpc", "sts-b", "qqp", "mnli", "qnli", "rte", "wnli")
    settings = study_plan.Settings(data_dir=str(FIXTURES), backbone="all-MiniLM-L6-v2", tasks=tasks,
                                   precision="fp32", **study_plan.FULL)  # fmt: skip
    study_plan.check_runs(settings, [1, 2, 3], list(study_plan.CONTENDERS), tmp_path / "w", tmp_path / "c")


def test_the_command_line_refuses_a_bad_sampler_in_one_line_before_study_json(tiny_bert, tmp_path):
    command = [sys.executable, "-m", "camtl.bench", "glue-mini", *quick_args(tiny_bert, tmp_path)]
    result = subprocess.run(
        [*command, "--task_sampling", "bogus"], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert (
        result.stderr.startswith("error: unknown --task_sampling 'bogus'")
        and "Traceback" not in result.stderr
    )
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "results" / "study.json").exists() and not (tmp_path / "work").exists()
