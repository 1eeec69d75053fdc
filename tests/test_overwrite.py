"""--overwrite_output_dir never leaves a folder worse than it found it: a new training run that fails at any
late point (tokenizing, the first step, a stop, evaluation) leaves the earlier run exactly as it was;
one that fails once it has a model of its own keeps that, and the earlier run is gone.

Each case copies an earlier trained run (and a file of the user's) into its own folder, then trains over
it with --overwrite_output_dir in a child forked from one process that imported run.py
(tests/forked_runs.py), the failure injected into the child.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "glue"


def fail(module: str, attribute: str, when: Callable[..., bool] = lambda *a, **k: True) -> Callable[[], None]:
    """Make ``module.attribute`` (a dotted path: ``CaMtlTrainer.compute_loss``) raise when ``when(*args)``."""

    def inject() -> None:
        *owners, name = attribute.split(".")
        target = importlib.import_module(module)
        for owner in owners:
            target = getattr(target, owner)
        original = getattr(target, name)

        def failing(*args, **kwargs):
            if when(*args, **kwargs):
                raise RuntimeError(f"injected failure in {attribute}")
            return original(*args, **kwargs)

        setattr(target, name, failing)

    return inject


def signal_at_first_step(number: int) -> Callable[[], None]:
    def inject() -> None:
        from transformers.trainer_callback import CallbackHandler

        original = CallbackHandler.on_step_begin

        def on_step_begin(self, args, state, control):
            os.kill(os.getpid(), number)
            return original(self, args, state, control)

        CallbackHandler.on_step_begin = on_step_begin

    return inject


@dataclass(frozen=True)
class Case:
    fault: Callable[[], None]
    keeps_earlier: bool  # True: the earlier run is back as it was; False: the new run's model is kept
    extra: tuple[str, ...] = ()  # {earlier}: the folder of the earlier run, outside the case's own
    killed_first: bool = False  # a SIGKILL at the first step of a run before this one left the folder


TRAINER = "camtl.training.trainer"
FIRST_STEP = fail(TRAINER, "CaMtlTrainer.compute_loss")
CASES = {
    "tokenizing": Case(fail("run", "load_features"), keeps_earlier=True),
    "building the trainer": Case(fail("run", "CaMtlTrainer"), keeps_earlier=True),
    "the first step": Case(FIRST_STEP, keeps_earlier=True),
    "Ctrl-C at the first step": Case(signal_at_first_step(signal.SIGINT), keeps_earlier=True),
    "writing the parameter report": Case(
        fail("pathlib", "Path.write_text", lambda path, *a: path.name == "parameter_report.json"),
        keeps_earlier=True,
    ),
    "saving the final model": Case(fail(TRAINER, "CaMtlTrainer.save_model"), keeps_earlier=True),
    "a run killed outright, then one that fails": Case(FIRST_STEP, keeps_earlier=True, killed_first=True),
    "resuming a checkpoint of another folder, the first step": Case(
        FIRST_STEP, keeps_earlier=True, extra=("--resume_from_checkpoint", "{earlier}/checkpoint-1")
    ),
    "evaluation after training": Case(fail(TRAINER, "CaMtlTrainer.evaluate"), keeps_earlier=False),
    "SIGTERM (a checkpoint is saved)": Case(signal_at_first_step(signal.SIGTERM), keeps_earlier=False),
    "the second step, after a checkpoint": Case(
        fail(TRAINER, "CaMtlTrainer.compute_loss", lambda self, *a, **k: self.state.global_step == 1),
        keeps_earlier=False,
        extra=("--save_steps", "1"),
    ),
}


def flags(tiny_bert: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return [
        "--model_name_or_path", str(tiny_bert), "--layout", "base", "--data_dir", str(FIXTURES),
        "--output_dir", str(out), "--features_cache_dir", str(cache), "--max_seq_length", "32",
        "--tasks", "rte", "--report_to", "none", "--do_train", "--do_eval", "--max_steps", "2", *extra,
    ]  # fmt: skip


def contents(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def drive(root: Path, tiny_bert: Path) -> None:
    """In a process of its own (pytest's capture would take the children's output): the earlier run, a
    copy of it per case, the SIGKILLed runs, then every case; each one's exit code into codes.json."""
    from forked_runs import run_all

    earlier, cache = root / "earlier", root / "cache"
    log = root / "earlier.log"
    assert run_all([("earlier", flags(tiny_bert, earlier, cache, "--save_steps", "1"), log, log, None)]) == {
        "earlier": 0
    }, log.read_text()[-3000:]
    (earlier / "notes.txt").write_text("the user's own file")
    outs = {name: root / f"case-{index}" for index, name in enumerate(CASES)}
    for out in outs.values():
        shutil.copytree(earlier, out)

    def job(name: str, fault: Callable[[], None], log: str) -> tuple:
        extra = [part.format(earlier=earlier) for part in CASES[name].extra]
        argv = flags(tiny_bert, outs[name], cache, "--overwrite_output_dir", *extra)
        return name, argv, outs[name].with_suffix(".out"), outs[name].with_suffix(log), fault

    killed = [job(n, signal_at_first_step(signal.SIGKILL), ".killed") for n in CASES if CASES[n].killed_first]
    assert set(run_all(killed).values()) <= {-signal.SIGKILL}
    codes = run_all([job(name, case.fault, ".err") for name, case in CASES.items()])
    (root / "codes.json").write_text(json.dumps(codes))


@pytest.fixture(scope="module")
def outcomes(tiny_bert, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("overwrite")
    command = [sys.executable, __file__, str(root), str(tiny_bert)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    codes = json.loads((root / "codes.json").read_text())
    outs = {name: root / f"case-{index}" for index, name in enumerate(CASES)}
    return {name: (codes[name], outs[name], outs[name].with_suffix(".err").read_text()) for name in CASES} | {
        "earlier": (0, root / "earlier", "")
    }


@pytest.mark.parametrize("name", list(CASES))
def test_a_failed_overwrite_leaves_the_earlier_run_or_a_usable_new_one(name, outcomes):
    code, out, stderr = outcomes[name]
    earlier = contents(outcomes["earlier"][1])
    assert code != 0, stderr[-3000:]
    assert not (out / ".camtl-earlier-run").exists()
    assert (out / "notes.txt").read_text() == "the user's own file"
    if CASES[name].keeps_earlier:
        assert contents(out) == earlier, stderr[-3000:]
        assert "the earlier run in" in stderr and "is restored" in stderr
    else:
        assert (out / "run.json").read_bytes() != (outcomes["earlier"][1] / "run.json").read_bytes()
        assert (
            any((out / p).is_dir() for p in ("checkpoint-1", "checkpoint-2"))
            or (out / "model.safetensors").is_file()
        )
        assert not {"eval_results.json", "eval_history.json"} & set(contents(out))


if __name__ == "__main__":
    drive(Path(sys.argv[1]), Path(sys.argv[2]))
