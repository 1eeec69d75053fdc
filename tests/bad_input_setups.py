"""How the bad-input catalogue (tests/test_bad_inputs.py) prepares its cases (damaged copies of the GLUE
fixtures and of a trained run, a read-only directory, a full disk) and runs most of them cheaply."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures" / "glue"

ROOT = os.geteuid() == 0  # root ignores permission bits: a read-only bind mount is needed instead


@dataclass(frozen=True)
class Sources:
    checkpoint: Path  # a saved camtl model (tasks rte and sst-2), no training state
    trained: Path  # the output directory of a 2-step training run with checkpoint-1 and checkpoint-2


Setup = Callable[[Path, Sources], None]  # (the case's directory, the sources) -> None


def write(relative: str, content: str) -> Setup:
    def setup(work: Path, sources: Sources) -> None:
        (work / relative).parent.mkdir(parents=True, exist_ok=True)
        (work / relative).write_text(content)

    return setup


def damaged_data(relative: str, damage: Callable[[Path], None]) -> Setup:
    """A copy of the fixture GLUE folder at {work}/data with one file damaged."""

    def setup(work: Path, sources: Sources) -> None:
        shutil.copytree(FIXTURES, work / "data")
        damage(work / "data" / relative)

    return setup


def append_row(row: str) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        text = path.read_bytes()
        path.write_bytes(text + (b"" if text.endswith(b"\n") else b"\n") + row.encode() + b"\n")

    return damage


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def truncated_checkpoint_weights(work: Path, sources: Sources) -> None:
    """A copy of the checkpoint at {work}/checkpoint whose model.safetensors lost its second half."""
    shutil.copytree(sources.checkpoint, work / "checkpoint")
    truncate(work / "checkpoint" / "model.safetensors")


def trained_run(damage: Callable[[Path], None] = lambda run: None) -> Setup:
    """A copy of the trained run at {work}/run, damaged by ``damage(run)``."""

    def setup(work: Path, sources: Sources) -> None:
        shutil.copytree(sources.trained, work / "run")
        damage(work / "run")

    return setup


def zero_middle(path: Path) -> None:
    """Same size, other bytes (each of 64 inverted, so they surely change): only a checksum can tell."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(byte ^ 0xFF for byte in data[middle : middle + 64])
    path.write_bytes(bytes(data))


def read_only_dir(work: Path, sources: Sources) -> None:
    (work / "ro").mkdir()
    if not ROOT:
        (work / "ro").chmod(0o555)


# Run inside a mount namespace of its own (unshare -rm needs no privileges): a read-only bind mount of
# {work}/ro when running as root, a 256 KiB tmpfs filled to the brim at {work}/full.
READ_ONLY = ["unshare", "-rm", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', "{work}/ro"]
FULL_DISK = [
    "unshare", "-rm", "sh", "-c",
    'mount -t tmpfs -o size=256k tmpfs "$0" && cat /dev/zero > "$0/fill" 2>/dev/null; exec "$@"',
    "{work}/full",
]  # fmt: skip


def run_forked(commands: dict[str, list[str]], logs: Path) -> dict[str, subprocess.CompletedProcess]:
    """``python run.py ARGV`` for each command line, as children of one process that imported run.py
    (tests/forked_runs.py): the same answers for a fraction of the start-up time."""
    logs.mkdir()
    jobs = [
        {"name": name, "argv": argv, "stdout": str(logs / f"{i}.out"), "stderr": str(logs / f"{i}.err")}
        for i, (name, argv) in enumerate(commands.items())
    ]
    (logs / "jobs.json").write_text(json.dumps(jobs))
    runner = subprocess.run(
        [sys.executable, str(TESTS / "forked_runs.py"), str(logs / "jobs.json")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert runner.returncode == 0, runner.stderr[-3000:]
    codes = json.loads((logs / "jobs.results.json").read_text())
    return {
        job["name"]: subprocess.CompletedProcess(
            job["argv"], codes[job["name"]], Path(job["stdout"]).read_text(), Path(job["stderr"]).read_text()
        )
        for job in jobs
    }


EARLIER_RESULTS = b'{"rte": {"accuracy": 0.625}, "glue_average": 0.625}\n'


def assert_refused(work: Path, result: subprocess.CompletedProcess, expect: str) -> None:
    """One line ``error: ...`` containing ``expect``, exit code 2, no traceback, nothing on stdout; the
    earlier results in {work}/out untouched, nothing new there and no feature cache."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("error: ")
    assert expect in lines[0], lines[0]
    assert result.stdout == ""
    assert [path.name for path in (work / "out").iterdir()] == ["eval_results.json"]
    assert (work / "out" / "eval_results.json").read_bytes() == EARLIER_RESULTS
    assert not (work / "cache").exists()
