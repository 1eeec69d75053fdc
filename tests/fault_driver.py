"""Fault injection for tests/test_faults.py: runs of ``run.main`` that die at chosen moments, then resume.

    python tests/fault_driver.py WORK_DIR POINT[,POINT...] -- RUN_FLAGS...

RUN_FLAGS name the output directory as ``{out}``. Each run is a child forked by tests/forked_runs.py
(torch, transformers and camtl are imported once): first an uninterrupted ``reference`` run, then one run
per POINT that SIGKILLs itself at that moment (a real SIGKILL: the process
dies at once, leaving whatever it had half written), then each of those resumed with
``--resume_from_checkpoint latest``. WORK_DIR/report.json holds how every child ended (its exit code, or
minus the signal that killed it); WORK_DIR/<name>.log its output.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import transformers.modeling_utils as modeling_utils  # noqa: E402
from forked_runs import run_all  # noqa: E402  (imports run.py once, for every child)
from transformers.trainer_callback import CallbackHandler, TrainerState  # noqa: E402

from camtl.training.trainer import CaMtlTrainer  # noqa: E402


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def cut_and_die(path) -> None:
    """The file as a kill in the middle of writing it leaves it: its first half."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])
    die()


def in_staging(path, step: int) -> bool:
    return f"tmp-checkpoint-{step}" in str(path)


def at_step_begin(step: int, action: Callable[[], None]) -> None:
    """``action`` when step ``step + 1`` begins (``step`` steps are done)."""
    original = CallbackHandler.on_step_begin

    def on_step_begin(self, args, state, control):
        if state.global_step == step:
            action()
        return original(self, args, state, control)

    CallbackHandler.on_step_begin = on_step_begin


def mid_step(step: int) -> None:
    """Inside step ``step + 1``: the forward pass is done, the backward pass and the update are not."""
    original = CaMtlTrainer.compute_loss

    def compute_loss(self, *args, **kwargs):
        loss = original(self, *args, **kwargs)
        if self.state.global_step == step:
            die()
        return loss

    CaMtlTrainer.compute_loss = compute_loss


def after_update(step: int) -> None:
    """The optimizer has updated the weights of step ``step + 1``; the step counter and scheduler have not."""
    original = CallbackHandler.on_optimizer_step

    def on_optimizer_step(self, args, state, control):
        control = original(self, args, state, control)
        if state.global_step == step:
            die()
        return control

    CallbackHandler.on_optimizer_step = on_optimizer_step


def cut_torch_file(name: str, step: int) -> None:
    original = torch.save

    def save(obj, f, *args, **kwargs):
        result = original(obj, f, *args, **kwargs)
        if isinstance(f, (str, os.PathLike)) and Path(f).name == name and in_staging(f, step):
            cut_and_die(f)
        return result

    torch.save = save


def cut_weights(step: int | None) -> None:
    """model.safetensors of checkpoint-``step`` (None: of the final model) is half written."""
    original = modeling_utils.safe_save_file

    def save(tensors, filename, *args, **kwargs):
        result = original(tensors, filename, *args, **kwargs)
        final = step is None and "checkpoint" not in str(filename)
        if final or (step is not None and in_staging(filename, step)):
            cut_and_die(filename)
        return result

    modeling_utils.safe_save_file = save


def cut_trainer_state(step: int) -> None:
    original = TrainerState.save_to_json

    def save(self, json_path):
        original(self, json_path)
        if in_staging(json_path, step):
            cut_and_die(json_path)

    TrainerState.save_to_json = save


def at_rename(step: int, before: bool) -> None:
    """The staged checkpoint-``step``, marker written, just before or just after its rename into place."""
    original = os.rename

    def rename(src, dst, *args, **kwargs):
        if in_staging(src, step) and before:
            die()
        original(src, dst, *args, **kwargs)
        if in_staging(src, step):
            die()

    os.rename = rename


def mid_rotation(name: str) -> None:
    """--save_total_limit deletes ``name``: its marker and one file are gone when the kill comes."""
    original = shutil.rmtree

    def rmtree(path, *args, **kwargs):
        if Path(path).name == name:
            sorted(Path(path).iterdir())[0].unlink()
            die()
        return original(path, *args, **kwargs)

    shutil.rmtree = rmtree


POINTS: dict[str, Callable[[], None]] = {
    "mid-step-3": lambda: mid_step(2),
    "after-update-5": lambda: after_update(4),
    "cut-weights-4": lambda: cut_weights(4),
    "cut-trainer-state-4": lambda: cut_trainer_state(4),
    "cut-optimizer-6": lambda: cut_torch_file("optimizer.pt", 6),
    "cut-sampling-state-8": lambda: cut_torch_file("sampling_state.pt", 8),
    "before-rename-6": lambda: at_rename(6, before=True),
    "after-rename-4": lambda: at_rename(4, before=False),
    "mid-rotation-2": lambda: mid_rotation("checkpoint-2"),
    "after-checkpoint-6": lambda: at_step_begin(6, die),
    "cut-final-weights": lambda: cut_weights(None),
    # Not a kill: SIGTERM as a cluster sends it, when step 5 begins; the run saves and exits with 143.
    "sigterm-5": lambda: at_step_begin(4, lambda: os.kill(os.getpid(), signal.SIGTERM)),
}


def main() -> None:
    work, points = Path(sys.argv[1]), sys.argv[2].split(",")
    template = sys.argv[sys.argv.index("--") + 1 :]

    def job(name: str, fault: Callable[[], None] | None, *extra: str):
        argv = [part.replace("{out}", str(work / name.removesuffix("-resumed"))) for part in template]
        log = work / f"{name}.log"
        return name, argv + list(extra), log, log, fault

    report = {"reference": run_all([job("reference", None)])}  # alone: it fills the feature cache
    report["first"] = run_all([job(p, POINTS[p]) for p in points])
    report["resumed"] = run_all(
        [job(f"{p}-resumed", None, "--resume_from_checkpoint", "latest") for p in points]
    )
    (work / "report.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
