"""Training: a run of CA-MTL, from its flags to its saved checkpoints, scores and prediction files.

trainer.py       CaMtlTrainer, the HF Trainer subclass: sampled batches, the heads' learning rate, the
                 loss, evaluation; split along its jobs into
uncertainty.py     MT-Uncertainty's step: scoring a pool of candidates and keeping the most uncertain
saving.py          complete-or-absent checkpoints with camtl's state; train_or_restore
counters.py        TaskUsage (examples drawn and used per task) and DivergenceWatch (a non-finite loss)
sampling.py      the task samplers and MT-Uncertainty's selection rule
schedule.py      the learning-rate schedule
evaluation.py    dev evaluation and test prediction for every task type
metrics.py       metrics (GLUE's, seqeval's entity F1, masked-LM accuracy), averages, the results table
submission.py    GLUE leaderboard files and the other tasks' prediction files
arguments.py     the command-line dataclasses; flag_checks.py and config_file.py check them
command_line.py  parse_arguments: flags, a JSON config or both, into the dataclasses, checked
precision.py     --precision: the choice, the CPU probe, autocast and the trainer's mixed_precision
checkpoints.py   complete-or-absent checkpoint folders, choosing ``latest``, run identity
overwrite.py     --overwrite_output_dir: the earlier run kept aside until the new one saves
run_settings.py  the settings a checkpoint records and a resume compares
signals.py       SIGINT / SIGTERM: a clean stop, with a checkpoint on SIGTERM
filesystem.py    a writable output folder, full disks, evaluation-N for another run's folder
allocator.py     host memory: entry points keep what a step frees for the next one

Imports: camtl.errors, camtl.tasks, camtl.data and camtl.model; never camtl.bench or camtl.api
(tests/test_layout.py). The names below are loaded when first used, so that the light modules here
(arguments, sampling, metrics, ...) do not import the HF Trainer.
"""

import importlib

_EXPORTS = {
    "CaMtlTrainer": "camtl.training.trainer",
    "DivergenceWatch": "camtl.training.counters",
    "TaskUsage": "camtl.training.counters",
    "mixed_precision": "camtl.training.precision",
    "sampling_state_file": "camtl.training.saving",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
