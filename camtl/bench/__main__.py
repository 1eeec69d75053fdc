"""``python -m camtl.bench PROGRAM [options]``: the benchmark programs.

speed      what this reimplementation costs per step (camtl.bench.speed)
device     the GPU check: precisions, host syncs, throughput (camtl.bench.device)
probe      the frozen-feature linear-probe floor (camtl.bench.probe)
margins    a run's dev scores against that floor (camtl.bench.probe)
diagnosis  why small runs sat at chance, one factor at a time (camtl.bench.diagnosis)
contention what sharing the CPU does to a training step (camtl.bench.contention)
glue-mini  the reproduction study (camtl.bench.study, camtl.bench.report)
precision  what bf16 costs and gains on this CPU (camtl.bench.precision_bench)
peer       camtl against the stock Hugging Face Trainer recipe (camtl.bench.peer)
parity     the main job in bf16 against fp32 and a second fp32 seed (camtl.bench.parity)
scenarios  the multi-task mixes beyond GLUE against their baselines (camtl.bench.scenarios)
"""

from __future__ import annotations

import argparse
import sys

from camtl.bench import (
    contention,
    device,
    diagnosis,
    parity,
    peer,
    precision_bench,
    probe,
    scenarios,
    speed,
    study,
)
from camtl.errors import exits_cleanly_on_usage_error
from camtl.training.allocator import retain_freed_memory
from camtl.training.command_line import OneLineErrors

# name -> (help, add_arguments, run(args, command))
PROGRAMS = {
    "speed": (speed.__doc__, speed.add_arguments, lambda args, command: speed.run(args)),
    "device": (device.__doc__, device.add_arguments, lambda args, command: device.run(args)),
    "probe": (probe.__doc__, probe.add_arguments, probe.run),
    "margins": ("A run's dev scores against the probe floor", probe.add_margin_arguments, probe.run_margins),
    "diagnosis": (diagnosis.__doc__, diagnosis.add_arguments, diagnosis.run),
    "contention": (contention.__doc__, contention.add_arguments, contention.run),
    "glue-mini": (study.__doc__, study.add_arguments, study.run),
    "peer": (peer.__doc__, peer.add_arguments, peer.run),
    "parity": (parity.__doc__, parity.add_arguments, parity.run),
    "scenarios": (scenarios.__doc__, scenarios.add_arguments, scenarios.run),
    "precision": (
        precision_bench.__doc__,
        precision_bench.add_arguments,
        lambda args, command: precision_bench.run(args),
    ),
}


@exits_cleanly_on_usage_error
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = OneLineErrors(  # a bad option is one line, as in run.py; the programs' parsers are its class
        prog="python -m camtl.bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    programs = parser.add_subparsers(dest="program", required=True)
    for name, (description, add_arguments, _) in PROGRAMS.items():
        add_arguments(programs.add_parser(name, help=description.strip().splitlines()[0]))
    args = parser.parse_args(argv)
    retain_freed_memory()  # as run.py does: the programs time and run what a training run runs
    PROGRAMS[args.program][2](args, " ".join(["python -m camtl.bench", *argv]))


if __name__ == "__main__":
    main()
