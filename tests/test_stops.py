"""End-to-end runs that are stopped or that meet a trained run: signals, a disk that fills up during a save,
evaluation-only runs into a trained run's directory, and harmless changes on resume."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from camtl.training.checkpoints import check_explicit

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "glue"


def flags(tiny_bert: Path, out: Path, cache: Path, *extra) -> list[str]:
    return [
        "--model_name_or_path", str(tiny_bert), "--layout", "base", "--data_dir", str(FIXTURES),
        "--output_dir", str(out), "--features_cache_dir", str(cache), "--max_seq_length", "32",
        "--tasks", "rte", "--per_device_train_batch_size", "2", "--report_to", "none", *map(str, extra),
    ]  # fmt: skip


def run(args: list[str], wrap: list[str] | None = None) -> subprocess.CompletedProcess:
    command = [*(wrap or []), sys.executable, "run.py", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def trained(tiny_bert, tmp_path_factory) -> Path:
    """A trained run with evaluations: checkpoint-2, checkpoint-4, eval_history.json."""
    root = tmp_path_factory.mktemp("trained")
    extra = ["--do_train", "--do_eval", "--max_steps", 4, "--save_steps", 2, "--max_eval_samples", 6]
    result = run(flags(tiny_bert, root / "run", root / "cache", *extra))
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "run"


def test_evaluation_and_prediction_only_runs_write_beside_a_trained_run(trained, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    before = {name: (out / name).read_bytes() for name in ("eval_results.json", "eval_history.json")}
    # No --max_seq_length: a checkpoint's own (32) is the default, not 128.
    common = ["--model_name_or_path", out, "--data_dir", FIXTURES, "--output_dir", out]
    common += ["--features_cache_dir", tmp_path / "cache", "--report_to", "none", "--max_eval_samples", 6]
    evaluation = run([*map(str, common), "--do_eval"])
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    assert f"this run writes into {out / 'evaluation-1'} instead" in evaluation.stderr
    prediction = run([*map(str, common), "--do_predict"])
    assert prediction.returncode == 0, prediction.stderr[-3000:]
    assert {name: (out / name).read_bytes() for name in before} == before
    assert not list(out.glob("*.tsv")) and not (out / "glue_submission.zip").exists()
    assert set(json.loads((out / "evaluation-1" / "eval_results.json").read_text())) == {
        "rte",
        "glue_average",
    }
    assert (out / "evaluation-2" / "glue_submission.zip").is_file()
    assert json.loads((out / "evaluation-1" / "parameter_report.json").read_text())["total"] > 0


def test_a_harmless_change_on_resume_gets_a_notice_and_takes_effect(trained, tiny_bert, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    extra = [
        "--do_train",
        "--max_steps",
        4,
        "--save_steps",
        1,
        "--resume_from_checkpoint",
        out / "checkpoint-2",
    ]
    result = run(flags(tiny_bert, out, tmp_path / "cache", *extra))
    assert result.returncode == 0, result.stderr[-3000:]
    notice = [line for line in result.stderr.splitlines() if "changed settings that do not change" in line]
    assert len(notice) == 1 and "--save_steps 2 (now 1)" in notice[0]
    assert check_explicit(out / "checkpoint-3", 1)  # saved at the new cadence


def start_training(tiny_bert: Path, tmp_path: Path) -> tuple[subprocess.Popen, list[str]]:
    """A long run; returns once it is inside the training loop (its progress bar has appeared)."""
    args = flags(tiny_bert, tmp_path / "out", tmp_path / "cache", "--do_train", "--max_steps", 5000)
    process = subprocess.Popen(
        [sys.executable, "run.py", *args, "--save_steps", "3"], cwd=REPO, stderr=subprocess.PIPE
    )
    chunks: list[str] = []
    reader = threading.Thread(
        target=lambda: chunks.extend(iter(lambda: os.read(process.stderr.fileno(), 65536).decode(), "")),
        daemon=True,
    )
    reader.start()
    deadline = time.monotonic() + 240
    while "/5000 [" not in "".join(chunks) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert process.poll() is None, "".join(chunks)[-3000:]
    return process, chunks


def finish(process: subprocess.Popen, chunks: list[str]) -> str:
    process.wait(timeout=120)
    time.sleep(0.2)  # the reader's last chunk
    return "".join(chunks)


def test_sigint_stops_at_once_with_one_line_and_exit_code_130(tiny_bert, tmp_path):
    process, chunks = start_training(tiny_bert, tmp_path)
    process.send_signal(signal.SIGINT)
    stderr = finish(process, chunks)
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    (line,) = error_lines(stderr)
    assert line.startswith("error: interrupted (SIGINT): ")
    assert stderr.rstrip().endswith(line)
    assert not list((tmp_path / "out").glob("tmp-*"))


def test_sigterm_saves_a_checkpoint_then_exits_with_143(tiny_bert, tmp_path):
    process, chunks = start_training(tiny_bert, tmp_path)
    process.send_signal(signal.SIGTERM)
    stderr = finish(process, chunks)
    assert process.returncode == 143, stderr[-3000:]
    assert "Traceback" not in stderr
    (line,) = error_lines(stderr)
    match = re.fullmatch(
        r"error: terminated \(SIGTERM\) during training: (\S+) is the newest complete checkpoint:"
        r" continue with --resume_from_checkpoint latest",
        line,
    )
    assert match, line
    saved = Path(match.group(1))
    step = json.loads((saved / "trainer_state.json").read_text())["global_step"]
    assert saved.name == f"checkpoint-{step}" and check_explicit(saved, 1) == saved


def test_a_disk_that_fills_up_during_a_save_keeps_the_previous_checkpoint(tiny_bert, tmp_path):
    """A 20 MiB tmpfs holds one checkpoint of the tiny model (13 MiB) but not two: a real ENOSPC."""
    disk = tmp_path / "disk"
    disk.mkdir()
    wrap = [
        "unshare", "-rm", "sh", "-c",
        'mount -t tmpfs -o size=20m tmpfs "$0" && "$@"; code=$?; cp -a "$0/out" "$0-copy"; exit $code', disk,
    ]  # fmt: skip
    extra = ["--do_train", "--max_steps", 3, "--save_steps", 1]
    result = run(flags(tiny_bert, disk / "out", tmp_path / "cache", *extra), wrap=list(map(str, wrap)))
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    (line,) = error_lines(result.stderr)
    assert line.startswith(f"error: saving {disk / 'out' / 'checkpoint-2'} failed (no space left on its disk")
    assert line.endswith(
        f"{disk / 'out' / 'checkpoint-1'} is intact: free some space, then continue with"
        " --resume_from_checkpoint latest"
    )
    copy = tmp_path / "disk-copy"
    assert sorted(p.name for p in copy.glob("checkpoint-*")) == ["checkpoint-1"]
    assert not list(copy.glob("tmp-*"))
    resumed = run(flags(tiny_bert, copy, tmp_path / "cache", *extra, "--resume_from_checkpoint", "latest"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {copy / 'checkpoint-1'}" in resumed.stderr
    assert (copy / "model.safetensors").is_file() and check_explicit(copy / "checkpoint-3", 1)


def test_a_disk_that_fills_up_while_the_final_model_is_written_names_the_directory(tiny_bert, tmp_path):
    """16 MiB: checkpoint-3 fits, the final model beside it does not."""
    disk = tmp_path / "disk"
    disk.mkdir()
    wrap = ["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=16m tmpfs "$0" && exec "$@"', str(disk)]
    extra = ["--do_train", "--max_steps", 3, "--save_steps", 3]
    result = run(flags(tiny_bert, disk / "out", tmp_path / "cache", *extra), wrap=wrap)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    (line,) = error_lines(result.stderr)
    assert line.startswith(f"error: writing into {disk / 'out'} failed (no space left on its disk, ")
    assert line.endswith(
        "free some space, then run again (with --resume_from_checkpoint latest to continue training)"
    )
