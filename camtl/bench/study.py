"""``python -m camtl.bench glue-mini``: the paper's claims on real GLUE with the bundled 6-layer encoder.

Contenders: the paper's module ablation (vanilla multi-task; + conditional attention; + conditional
adapter; + conditional layer norm = CA-MTL; + MT-Uncertainty), single-task models, and camtl's own
options as ablations of CA-MTL. Every multitask contender trains ``max_steps`` x ``batch_size``
examples with the same learning rate, schedule, sampling, precision and sequence length; each single-task
model trains on as many examples of its task as the multitask sampler draws of it in ``max_steps``. Each
run is one ``run.py`` subprocess that trains and saves the model (the core contenders also evaluate at
``CURVE_POINTS`` of training, for the learning curve); this program then predicts the first
``max_eval_samples`` rows of every dev set with ``camtl.training.evaluation.predict_features``
(what run.py's own evaluation calls), scores them with ``camtl.training.metrics``, and keeps the
predictions for paired bootstraps.

The queue runs seed 1 of every core contender first, then seed 2, then seed 3, then the ablations, so that
a useful table exists early. One record per run, ``<output>/runs/<contender>-seed<S>.json`` (and
``.predictions.json``), written atomically as the run finishes: the study resumes where it stopped.
Each run keeps its newest full checkpoint (saved at every quarter of training), so a run that a stopped
session cut short continues from it (``resumed_from_step`` in its record; ``wall_seconds`` then counts
the last attempt only) instead of starting again. ``--commit`` commits each record at once. Reports
(``camtl.bench.report``) are rebuilt from the records; what they need (the probe floor at the study's
cap, the dev labels) is checked before the first run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from camtl.bench import report
from camtl.bench.common import DEFAULT_BACKBONE, RUNNING, git_commit, read_json, write_json, x100
from camtl.bench.study_plan import (
    CONTENDERS,
    FULL,
    QUICK,
    QUICK_TASKS,
    Settings,
    check_runs,
    queue,
    single_task_steps,
)
from camtl.bench.study_runs import (
    part_file,
    run_multitask,
    run_single_task_part,
    save_record,
    single_task_record,
)
from camtl.errors import EXIT_SIGTERM, Stopped, UsageError
from camtl.model import encoder_layer_count
from camtl.tasks import resolve_tasks
from camtl.training.precision import choose_precision, cpu_name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default 1 2 3 (1 with --quick)")
    parser.add_argument("--contenders", nargs="+", choices=list(CONTENDERS), default=list(CONTENDERS))
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run of a few minutes (writes to output/ by default)"
    )
    parser.add_argument("--report_only", action="store_true", help="rebuild the reports; run nothing")
    parser.add_argument("--workers", type=int, default=2, help="runs at once (each with --threads threads)")
    parser.add_argument("--commit", action="store_true", help="git commit each record as it is written")
    parser.add_argument("--data_dir", default="../shared/glue", help="GLUE folder")
    parser.add_argument("--tasks", nargs="+", default=None, help="GLUE tasks (default: all nine)")
    parser.add_argument("--backbone", default=None, help="BERT directory (default: the bundled encoder)")
    parser.add_argument("--output", type=Path, default=None, help="default results/glue-mini")
    parser.add_argument(
        "--work_dir", type=Path, default=None, help="run.py outputs (default output/glue-mini)"
    )
    parser.add_argument("--features_cache_dir", type=Path, default=Path("cache/features"))
    parser.add_argument(
        "--probe",
        type=Path,
        default=None,
        help="the floor to compare with (default results/probe.json; none with --quick)",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default=None,
        help="default: the study's recorded precision, or auto (camtl.training.precision) for a new study",
    )
    for name, value in FULL.items():
        parser.add_argument(f"--{name}", type=type(value), default=None, help=f"default {value}")


def settings_from(args: argparse.Namespace, recorded: dict | None) -> Settings:
    """The study's settings from the flags; the precision is the recorded one unless given."""
    values = dict(QUICK if args.quick else FULL)
    values.update({name: getattr(args, name) for name in FULL if getattr(args, name) is not None})
    for name, value in values.items():
        if isinstance(value, (int, float)) and not (math.isfinite(value) and value > 0):
            raise UsageError(f"--{name} must be a finite positive number, got {value}")
    backbone = args.backbone or DEFAULT_BACKBONE
    if encoder_layer_count(backbone) is None:
        raise UsageError(f"--backbone {backbone} is not a BERT directory (no config.json): pass a local BERT")
    if not Path(args.data_dir).is_dir():
        raise UsageError(f"--data_dir {args.data_dir} does not exist: point it at the GLUE folder")
    requested = args.precision or (recorded or {}).get("precision") or "auto"
    torch.set_num_threads(values["threads"])  # auto measures at the thread count each run uses
    precision = choose_precision(requested, "cpu").precision
    tasks = args.tasks or (QUICK_TASKS if args.quick else None)
    return Settings(
        data_dir=str(args.data_dir),
        backbone=str(backbone),
        tasks=tuple(resolve_tasks(tasks)),
        precision=precision,
        **values,
    )


def check_queue(args: argparse.Namespace, seeds: list[int]) -> None:
    """Seeds of 0 or more, each seed and contender once (twice, two workers would share a run's folder),
    and at least one worker."""
    for flag, values in (("--seeds", seeds), ("--contenders", args.contenders)):
        repeated = sorted({str(value) for value in values if values.count(value) > 1})
        if repeated:
            raise UsageError(f"{flag} names {', '.join(repeated)} more than once: name each once")
    if min(seeds) < 0:
        raise UsageError(f"--seeds must be 0 or more, got {min(seeds)}")
    if args.workers < 1:
        raise UsageError(f"--workers must be 1 or more (runs at once), got {args.workers}")


def open_study(output: Path, settings: Settings, command: str, report_only: bool) -> dict:
    """study.json: the settings (a different setting in the same folder is refused) and the commands."""
    study_file = output / "study.json"
    study = {"settings": dataclasses.asdict(settings), "commands": []}
    if study_file.exists():
        study = read_json(study_file)
        recorded = {name: value for name, value in study["settings"].items() if name != "threads"}
        if recorded != json.loads(json.dumps(settings.compared())):
            raise UsageError(
                f"{output} holds runs made with other settings ({study_file}): pass the same"
                " options, or another --output"
            )
    if command not in study["commands"] and not report_only:
        study["commands"].append(command)
    write_json(study_file, study)
    return study


def _locations(args: argparse.Namespace) -> tuple[Path, Path]:
    """The study's output folder and run.py's work folder (their own for --quick)."""
    output = args.output or Path("output/glue-mini-quick" if args.quick else "results/glue-mini")
    work_dir = args.work_dir or Path("output/glue-mini-quick/work" if args.quick else "output/glue-mini")
    return output, work_dir


def _announce(done: int, settings: Settings) -> None:
    if done:
        print(f"[glue-mini] {done} runs done before, skipped", flush=True)
    print(f"[glue-mini] precision {settings.precision} on {cpu_name()}", flush=True)


def run(args: argparse.Namespace, command: str) -> None:
    output, work_dir = _locations(args)
    study_file = output / "study.json"
    settings = settings_from(args, read_json(study_file)["settings"] if study_file.exists() else None)
    seeds = args.seeds or ([1] if args.quick else [1, 2, 3])
    check_queue(args, seeds)
    if not args.report_only:  # run.py's own checks, before study.json binds the folder to the settings
        check_runs(settings, seeds, args.contenders, work_dir, args.features_cache_dir)
    probe = args.probe or (None if args.quick else Path("results/probe.json"))
    report.check_inputs(settings, probe)  # before hours of runs, not after them
    study = open_study(output, settings, command, args.report_only)
    parts_dir = output / "runs" / "parts"
    pending = [] if args.report_only else pending_work(output, parts_dir, seeds, args.contenders, settings)
    done = len(seeds) * len(args.contenders) - len({(seed, name) for seed, name, _ in pending})
    _announce(0 if args.report_only else done, settings)
    lock, stopping = threading.Lock(), stop_on_sigterm()

    def one(seed: int, name: str, task: str | None) -> None:
        if stopping.is_set():
            return
        contender, cache = CONTENDERS[name], args.features_cache_dir
        which = f"{name} seed {seed}" + (f" ({task})" if task else "")
        print(f"[glue-mini] {which}: running (logs under {work_dir})", flush=True)
        try:
            if task is not None:
                run_single_task_part(contender, seed, task, settings, work_dir, cache, parts_dir)
            record = (
                None if contender.single_task else run_multitask(contender, seed, settings, work_dir, cache)
            )
        except RuntimeError:
            if stopping.is_set():  # run.py saved a checkpoint at its current step and stopped
                return
            raise
        with lock:
            if contender.single_task:
                if (output / "runs" / f"{name}-seed{seed}.json").exists():  # the other worker combined them
                    return
                record = single_task_record(contender, seed, settings, parts_dir)
            if record is None:  # other models of the single-task contender are still to come
                return
            save_record(output, record)
            report.write_reports(output, settings, study["commands"], probe, list(CONTENDERS))
            print(
                f"[glue-mini] {name} seed {seed}: GLUE average {x100(record['glue_average'])} in"
                f" {record['wall_seconds'] / 60:.1f} min",
                flush=True,
            )
            if args.commit:
                git_commit([output], f"glue-mini: {name} seed {seed}")

    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        for future in [pool.submit(one, *work) for work in pending]:
            future.result()
    report.write_reports(output, settings, study["commands"], probe, list(CONTENDERS))
    if stopping.is_set():
        raise Stopped(
            "stopped by SIGTERM: the runs in progress saved a checkpoint; the same command continues them",
            EXIT_SIGTERM,
        )


def pending_work(
    output: Path, parts_dir: Path, seeds: list[int], names: list[str], settings: Settings
) -> list[tuple[int, str, str | None]]:
    """(seed, contender, task) of every run without a record, in queue order; the single-task contender
    is one item per model (task) without a part file, so that both workers share its models."""
    work = []
    for seed, name in queue(seeds, names):
        contender = CONTENDERS[name]
        if (output / "runs" / f"{name}-seed{seed}.json").exists():
            continue
        if not contender.single_task:
            work.append((seed, name, None))
            continue
        missing = [
            t for t in single_task_steps(settings) if not part_file(parts_dir, contender, seed, t).exists()
        ]
        work += [(seed, name, task) for task in missing] or [(seed, name, None)]  # None: combine the parts
    return work


def stop_on_sigterm() -> threading.Event:
    """SIGTERM stops the study cleanly: each run.py in progress gets it too (and saves a checkpoint at its
    current step), no new run starts, and the event is set."""
    stopping = threading.Event()

    def handler(signum, frame) -> None:
        stopping.set()
        for process in list(RUNNING):
            process.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, handler)
    return stopping
