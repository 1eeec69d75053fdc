"""The study's plan: its contenders (the paper's ablation order, then camtl's options), the settings that
make two runs comparable, the run.py flags of each run (and their check, before any run), the single-task
budgets, and the queue's order."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from camtl.bench.common import GLUE_AVERAGE_TASKS
from camtl.data.splits import read_split
from camtl.errors import UsageError
from camtl.training.sampling import TemperatureSampler


@dataclass(frozen=True)
class Contender:
    name: str
    description: str
    flags: tuple[str, ...] = ()  # run.py flags on top of the study's
    single_task: bool = False


CA_MTL = ("--layout", "base")
MTU = ("--task_sampling", "mt-uncertainty")
CONTENDERS = {
    c.name: c
    for c in (
        Contender("vanilla", "shared encoder, per-task heads, no conditional module", ("--layout", "none")),
        Contender("ca-mtl", "+ conditional layer norm: CA-MTL, the reference-exact default", CA_MTL),
        Contender(
            "+attention",
            "+ conditional alignment and attention",
            CA_MTL + ("--conditional_modules", "alignment", "attention"),
        ),
        Contender(
            "+adapter",
            "+ conditional adapter (top layer from scratch)",
            CA_MTL + ("--conditional_modules", "alignment", "attention", "adapter"),
        ),
        Contender("ca-mtl-mtu", "CA-MTL with MT-Uncertainty sampling", CA_MTL + MTU),
        Contender("single-task", "one plain encoder per task", ("--layout", "none"), single_task=True),
        Contender(
            "mtu-eval-scoring",
            "MT-Uncertainty scoring with dropout off",
            CA_MTL + MTU + ("--mtu_scoring_mode", "eval"),
        ),
        Contender(
            "example-mean", "CA-MTL, loss = mean over examples", CA_MTL + ("--loss_reduction", "example_mean")
        ),
        Contender(
            "per-block-film", "CA-MTL, one FiLM per block of M(z)", CA_MTL + ("--attention_film", "per_block")
        ),
        Contender(
            "adapter-gelu", "CA-MTL, GELU inside the adapter", CA_MTL + ("--adapter_activation", "gelu")
        ),
        Contender("mean-pooling", "CA-MTL, mean pooling (the encoder's own)", CA_MTL + ("--pooling", "mean")),
        Contender(
            "heads-x10", "CA-MTL, heads at 10x the learning rate", CA_MTL + ("--head_lr_multiplier", "10")
        ),
    )
}
CORE_CONTENDERS = ("vanilla", "ca-mtl", "+attention", "+adapter", "ca-mtl-mtu", "single-task")
# The core multitask runs evaluate every quarter of training (the learning curve); the last quarter's is the
# final evaluation of the saved model, made by this program.
CURVE_FRACTION = 0.25


@dataclass(frozen=True)
class Settings:
    """Everything that makes two runs of one contender and seed comparable."""

    data_dir: str
    backbone: str
    tasks: tuple[str, ...]
    max_steps: int
    batch_size: int
    learning_rate: float
    max_seq_length: int
    max_eval_samples: int
    task_sampling: str
    sampling_temperature: float
    logging_steps: int
    threads: int  # each run's torch threads: a scheduling choice, recorded per run, never compared
    precision: str  # resolved once (auto chooses by the first machine) and recorded in study.json

    def compared(self) -> dict:
        """The settings two records must share: all but the thread count (MT-Uncertainty, ~5x a step's
        cost, runs alone with every core while the others share them)."""
        return {name: value for name, value in asdict(self).items() if name != "threads"}


FULL = {
    "max_steps": 2400,
    "batch_size": 32,
    "learning_rate": 1e-4,
    "max_seq_length": 128,
    "max_eval_samples": 1000,
    "task_sampling": "temperature",
    "sampling_temperature": 3.0,
    "logging_steps": 100,
    "threads": 1,
}
QUICK = {
    **FULL,
    "max_steps": 4,
    "batch_size": 4,
    "learning_rate": 1e-3,
    "max_seq_length": 32,
    "max_eval_samples": 8,
    "logging_steps": 2,
}
QUICK_TASKS = ("rte", "sts-b")


def single_task_steps(settings: Settings) -> dict[str, int]:
    """Steps of each single-task model: as many batches of its task as the multitask sampler draws of it in
    ``max_steps`` (its expected share). WNLI, outside the GLUE average, gets no model (run.py cannot average
    a WNLI-only evaluation)."""
    sizes = [len(read_split(settings.data_dir, task, "train")) for task in settings.tasks]
    temperature = settings.sampling_temperature if settings.task_sampling == "temperature" else 1.0
    shares = TemperatureSampler(sizes, settings.batch_size, 0, temperature).task_probabilities
    return {
        task: max(1, round(settings.max_steps * float(share)))
        for task, share in zip(settings.tasks, shares, strict=True)
        if task in GLUE_AVERAGE_TASKS
    }


def run_flags(
    contender: Contender,
    settings: Settings,
    seed: int,
    output_dir: Path,
    cache_dir: Path,
    task: str | None = None,
    max_steps: int | None = None,
) -> list[str]:
    """run.py's flags for one run (train and save); ``task`` and ``max_steps`` for one single-task model."""
    steps = max_steps or settings.max_steps
    flags = [
        "--model_name_or_path", settings.backbone, "--data_dir", settings.data_dir,
        "--output_dir", output_dir, "--features_cache_dir", cache_dir, "--do_train",
        "--max_steps", steps, "--seed", seed, "--per_device_train_batch_size", settings.batch_size,
        "--learning_rate", settings.learning_rate, "--max_seq_length", settings.max_seq_length,
        "--precision", settings.precision,
        "--train_sampling_strategy", "group_by_length", "--logging_steps", min(settings.logging_steps, steps),
        "--save_strategy", "steps", "--save_steps", CURVE_FRACTION, "--save_total_limit", 1,
        "--report_to", "none",
        "--overwrite_output_dir", "--tasks", *([task] if task else settings.tasks),
    ]  # fmt: skip
    if task is None and contender.name in CORE_CONTENDERS:
        flags += ["--eval_strategy", "steps", "--eval_steps", CURVE_FRACTION]
        flags += ["--max_eval_samples", settings.max_eval_samples, "--per_device_eval_batch_size", 128]
    flags += list(contender.flags)
    if "mt-uncertainty" not in contender.flags and task is None:
        flags += ["--task_sampling", settings.task_sampling]
        if settings.task_sampling == "temperature":
            flags += ["--sampling_temperature", settings.sampling_temperature]
    return [str(flag) for flag in flags]


def queue(seeds: list[int], names: list[str]) -> list[tuple[int, str]]:
    """Seed 1 of every core contender, then seed 2, ...; then the ablations in the same order."""
    core = [n for n in names if n in CORE_CONTENDERS]
    ablations = [n for n in names if n not in CORE_CONTENDERS]
    return [(seed, name) for group in (core, ablations) for seed in seeds for name in group]


def check_runs(
    settings: Settings, seeds: list[int], names: list[str], work_dir: Path, cache_dir: Path
) -> None:
    """Every queued run's run.py flags pass run.py's checks of their values, without a model loaded: they
    are parsed into run.py's argument dataclasses (whose own checks refuse a NaN rate, a seed out of
    range, a zero batch size, ...), the sampler is resolved and the model options are checked against the
    layout, as run.py and load_model do, and the sequence length must fit the backbone's positions. A
    setting run.py would refuse then stops the study before study.json binds its folder to it."""
    from camtl.model.configuration import check_options_apply
    from camtl.model.loading import position_limit
    from camtl.training.command_line import parse_arguments

    logging_dir = os.environ.get("TENSORBOARD_LOGGING_DIR")  # the training arguments set it
    for seed, name in queue(seeds, names):
        contender = CONTENDERS[name]
        task = settings.tasks[0] if contender.single_task else None
        flags = run_flags(contender, settings, seed, work_dir / f"{name}-seed{seed}", cache_dir, task=task)
        try:
            model_args, data_args, _ = parse_arguments(flags)
            data_args.resolve_sampler()
            check_options_apply(model_args.layout or "none", model_args.model_options())
        except UsageError as error:
            raise UsageError(f"{error} (in run.py's flags for {name} seed {seed})") from None
        finally:
            os.environ.pop("TENSORBOARD_LOGGING_DIR", None)
            if logging_dir is not None:
                os.environ["TENSORBOARD_LOGGING_DIR"] = logging_dir
    positions = position_limit(settings.backbone) or settings.max_seq_length
    if not 2 < settings.max_seq_length <= positions:  # run.py's floor; the model's ceiling
        raise UsageError(
            f"--max_seq_length must be above 2 and at most the backbone's position embeddings ({positions}),"
            f" got {settings.max_seq_length}"
        )
