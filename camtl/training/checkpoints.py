"""Checkpoints that are either complete or recognisably incomplete, and the choice of one to resume from.

A checkpoint is written under ``tmp-checkpoint-N/checkpoint-N`` (a name that neither transformers nor
``latest`` takes for a checkpoint), completed with a marker ``camtl_checkpoint.json`` that lists every
file with its size, then renamed to ``checkpoint-N``: a kill leaves either the previous checkpoints and
a temporary folder, or a complete new one. The marker also carries the run's id (``run.json`` in the
output directory), so ``latest`` never resumes a run that ``--overwrite_output_dir`` replaced.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
import zipfile
from pathlib import Path

from camtl.errors import CheckpointSaveFailed, UsageError
from camtl.training.filesystem import disk_problem
from camtl.training.run_settings import SETTINGS_FILE

logger = logging.getLogger(__name__)

MARKER = "camtl_checkpoint.json"
RUN_FILE = "run.json"
STAGING_PREFIX = "tmp-checkpoint-"
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
FORMAT = 1


def staging_dir(run_dir: Path, step: int) -> Path:
    return run_dir / f"{STAGING_PREFIX}{step}"


def checkpoints_in(run_dir: Path) -> list[Path]:
    """The ``checkpoint-N`` folders of a directory, newest (highest N) first."""
    if not run_dir.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in run_dir.iterdir() if (m := CHECKPOINT.match(p.name)) and p.is_dir()
    ]
    return [path for _, path in sorted(found, reverse=True)]


def recorded_run_settings(run_dir: Path) -> dict | None:
    """The run settings that the newest checkpoint of a run.py --output_dir recorded (an older checkpoint's
    when the newest one's file is missing or damaged); None without any."""
    for checkpoint in checkpoints_in(run_dir):
        try:
            settings = json.loads((checkpoint / SETTINGS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(settings, dict):
            return settings
    return None


def resumes_latest(resume: str) -> bool:
    """Whether a --resume_from_checkpoint value asks for the run's newest complete checkpoint."""
    return resume.lower() in ("latest", "true")


def read_marker(checkpoint: Path) -> dict | None:
    try:
        return json.loads((checkpoint / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _fsync(path: Path) -> None:
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomically(path: Path, value) -> None:
    """Write under a temporary name, flush to disk, rename: a reader sees the old file or the new one."""
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w") as f:
        f.write(json.dumps(value, indent=2))
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def prepare_staging(run_dir: Path, step: int) -> Path:
    """An empty ``tmp-checkpoint-N/checkpoint-N`` (a leftover of a killed save is discarded)."""
    staging = staging_dir(run_dir, step)
    shutil.rmtree(staging, ignore_errors=True)
    (staging / f"checkpoint-{step}").mkdir(parents=True)
    return staging / f"checkpoint-{step}"


def complete_checkpoint(staged: Path, run_dir: Path, run_id: str, step: int, world_size: int) -> Path:
    """Write the marker into a staged checkpoint and move it into place as ``checkpoint-N``."""
    files = {p.name: p.stat().st_size for p in sorted(staged.iterdir()) if p.is_file()}
    for name in files:
        _fsync(staged / name)
    marker = {"format": FORMAT, "run_id": run_id, "step": step, "world_size": world_size, "files": files}
    write_json_atomically(staged / MARKER, marker)
    _fsync(staged)
    final = run_dir / staged.name
    if final.exists():  # an incomplete or other run's folder of the same step: set aside, then removed
        discard(final)
    os.rename(staged, final)
    _fsync(run_dir)
    shutil.rmtree(staged.parent, ignore_errors=True)
    return final


def discard(checkpoint: Path) -> None:
    """Delete a checkpoint; the marker goes first, so a kill half-way leaves it recognisably incomplete."""
    (checkpoint / MARKER).unlink(missing_ok=True)
    shutil.rmtree(checkpoint, ignore_errors=True)


def rotate(run_dir: Path, limit: int | None, keep: Path) -> None:
    """``--save_total_limit``: delete the oldest checkpoints beyond the limit, never ``keep`` (the newest)."""
    if not limit or limit <= 0:
        return
    for old in [p for p in checkpoints_in(run_dir) if p != keep][limit - 1 :]:
        discard(old)


def remove_stale_staging(run_dir: Path) -> None:
    """Temporary folders of saves that a kill interrupted: never a checkpoint, safe to delete."""
    if run_dir.is_dir():
        for path in run_dir.glob(f"{STAGING_PREFIX}*"):
            shutil.rmtree(path, ignore_errors=True)


def required_files(world_size: int) -> list[str]:
    """What a resume needs from a checkpoint: without any of them it would continue a different run."""
    ranks = range(world_size)
    rng = ["rng_state.pth"] if world_size == 1 else [f"rng_state_{r}.pth" for r in ranks]
    sampling = ["sampling_state.pt"] + [f"sampling_state_rank{r}.pt" for r in ranks if r > 0]
    model = ["config.json", "model.safetensors", "trainer_state.json", SETTINGS_FILE]
    return model + ["optimizer.pt", "scheduler.pt"] + rng + sampling


def _damage(path: Path) -> str | None:
    """Why a file cannot be read, or None; checks the format without loading tensors."""
    try:
        if path.suffix in (".pt", ".pth", ".bin"):
            with zipfile.ZipFile(path) as archive:  # torch.save writes a zip; testzip checks every CRC
                bad = archive.testzip()
            return f"member {bad} fails its checksum" if bad else None
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".safetensors":
            with path.open("rb") as f:
                header_size = int.from_bytes(f.read(8), "little")
                header = json.loads(f.read(header_size))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            if path.stat().st_size != 8 + header_size + end:
                return "its size does not match its header"
    except (OSError, ValueError, zipfile.BadZipFile, KeyError, TypeError) as error:
        return str(error).splitlines()[0] if str(error) else type(error).__name__
    return None


def checkpoint_problem(checkpoint: Path, world_size: int) -> str | None:
    """What is missing or damaged in a checkpoint, or None when it is complete and readable."""
    marker = read_marker(checkpoint)
    if marker is None:
        return f"it has no {MARKER} (written only when a checkpoint is complete)"
    for name, size in marker.get("files", {}).items():
        path = checkpoint / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, {size} were written"
    for name in required_files(world_size):
        if not (checkpoint / name).is_file():
            return f"{name} is missing"
    for name in marker.get("files", {}):
        problem = _damage(checkpoint / name)
        if problem:
            return f"{name} is damaged ({problem})"
    return None


def run_id_of(output_dir: Path) -> str | None:
    try:
        return json.loads((output_dir / RUN_FILE).read_text()).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None


def new_run_id() -> str:
    return uuid.uuid4().hex


def write_run_file(output_dir: Path, run_id: str) -> None:
    write_json_atomically(output_dir / RUN_FILE, {"run_id": run_id})


def last_good(
    output_dir: Path, run_id: str | None, world_size: int, below: Path | None = None
) -> Path | None:
    """The newest complete checkpoint of the run (any run when ``run_id`` is None), older than ``below``."""
    for path in checkpoints_in(output_dir):
        if below is not None and path.parent == below.parent and _step(path) >= _step(below):
            continue
        marker = read_marker(path) or {}
        if (run_id is None or marker.get("run_id") == run_id) and checkpoint_problem(
            path, world_size
        ) is None:
            return path
    return None


def _step(path: Path) -> int:
    match = CHECKPOINT.match(path.name)
    return int(match.group(1)) if match else -1


def choose_latest(output_dir: Path, world_size: int) -> Path:
    """``--resume_from_checkpoint latest``: the newest complete checkpoint of the run in ``output_dir``;
    each newer one that is incomplete, damaged or another run's is named and skipped."""
    run_id = run_id_of(output_dir)
    candidates, skipped = checkpoints_in(output_dir), []
    for path in candidates:
        marker = read_marker(path) or {}
        if run_id is not None and marker and marker.get("run_id") != run_id:
            skipped.append((path, f"it belongs to an earlier run in {output_dir}"))
            continue
        problem = checkpoint_problem(path, world_size)
        if problem:
            skipped.append((path, problem))
            continue
        for older, reason in skipped:  # only now: when nothing is found, the error line says it all
            logger.warning("skipping %s: %s", older, reason)
        logger.info("resuming from %s, the newest complete checkpoint of this run", path)
        return path
    if not candidates:
        found = "no checkpoint-N folder"
    else:
        newest, reason = skipped[0]
        found = f"no complete checkpoint of this run ({newest.name}: {reason}"
        found += f"; {len(skipped) - 1} more skipped)" if len(skipped) > 1 else ")"
    raise UsageError(
        f"--resume_from_checkpoint latest: {found} in {output_dir}: drop the flag to start afresh,"
        " or pass the --output_dir of the interrupted run"
    )


def check_explicit(checkpoint: Path, world_size: int) -> Path:
    """A named checkpoint must be complete: else one line naming the bad piece and the last good one."""
    if not (checkpoint / "trainer_state.json").is_file() and read_marker(checkpoint) is None:
        raise UsageError(
            f"--resume_from_checkpoint {checkpoint} is not a training checkpoint (no trainer_state.json):"
            " pass a checkpoint-N folder of an earlier run, or latest"
        )
    problem = checkpoint_problem(checkpoint, world_size)
    if problem:
        good = last_good(checkpoint.parent, run_id_of(checkpoint.parent), world_size, below=checkpoint)
        fallback = f"resume from {good} instead" if good else "no earlier checkpoint is complete"
        raise UsageError(
            f"--resume_from_checkpoint {checkpoint} is incomplete or damaged: {problem}: {fallback}"
        )
    return checkpoint


def save_failure(error: Exception, run_dir: Path, step: int, run_id: str, world_size: int) -> Exception:
    """One line for a save that the disk made fail, naming the checkpoint that is still intact; any other
    failure is left as it is."""
    problem = disk_problem(error, run_dir)
    if problem is None:
        return error
    good = last_good(run_dir, run_id, world_size)
    intact = f"{good} is intact" if good else "no earlier checkpoint of this run is complete"
    return CheckpointSaveFailed(
        f"saving {run_dir / f'checkpoint-{step}'} failed ({problem}): {intact}:"
        " free some space, then continue with --resume_from_checkpoint latest"
    )
