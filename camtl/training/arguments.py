"""Command-line arguments: model, data and training dataclasses for ``HfArgumentParser``.

The training arguments extend transformers' ``TrainingArguments`` with the flags of the authors'
README that modern transformers dropped; each is mapped onto its current equivalent with a
one-line notice.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments
from transformers.integrations import get_available_reporting_integrations
from transformers.utils import is_torch_xla_available

from camtl.errors import UsageError
from camtl.model.configuration import CaMtlConfig
from camtl.training.flag_checks import check_options_camtl_applies, check_training_numbers, task_weight_map
from camtl.training.precision import PRECISIONS, choose_precision
from camtl.training.sampling import SAMPLERS

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        metadata={
            "help": "CA-MTL-base, CA-MTL-large, CA-MTL-mini (base layout on the bundled offline encoder), a "
            "BERT name or directory (the multitask baseline), or a camtl checkpoint directory"
        }
    )
    layout: str | None = field(
        default=None,
        metadata={"help": "Put a layout on the backbone: base, large or none (default: from the model name)"},
    )
    freeze_encoder_layers: str | None = field(
        default=None,
        metadata={
            "help": "Freeze embeddings and encoder layers a-b (inclusive); conditional parts stay trainable"
        },
    )
    # camtl's options; each default is the authors' computation (docs/reproduction.md).
    pooling: str | None = field(
        default=None,
        metadata={
            "help": "cls (default: the [CLS] pooler, as the authors), mean, or auto (the backbone's own)"
        },
    )
    conditional_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Ablations: the conditional parts to keep (alignment attention layer_norm adapter)",
                  "nargs": "+"},
    )  # fmt: skip
    attention_blocks: int | None = field(
        default=None,
        metadata={"help": "Blocks of M(z) (default hidden_size // max_seq_length, the authors')"},
    )
    attention_film: str | None = field(
        default=None, metadata={"help": "shared (default: one FiLM for all blocks of M(z)) or per_block"}
    )
    adapter_activation: str | None = field(
        default=None, metadata={"help": "An activation between the adapter's projections (the authors: none)"}
    )
    stream_residual: bool = field(
        default=False, metadata={"help": "Large layout: residual and CLN around each stream adapter"}
    )
    loss_reduction: str | None = field(
        default=None,
        metadata={"help": "task_mean (default: mean of each task's mean loss, the authors') or example_mean"},
    )
    task_weights: list[str] | None = field(
        default=None,
        metadata={
            "help": "Weights of the tasks' losses, e.g. sst-2=1 wikitext2-mlm=0.5 (default 1)",
            "nargs": "+",
        },
    )

    def model_options(self) -> dict:
        """The CaMtlConfig options set on the command line (unset ones keep the config's defaults)."""
        names = ("pooling", "conditional_modules", "attention_blocks", "attention_film", "adapter_activation",
                 "stream_residual", "loss_reduction")  # fmt: skip
        values = {name: getattr(self, name) for name in names}
        # ``is``, not ``in (None, False)``: 0 == False, and --attention_blocks 0 must be checked, not dropped.
        options = {name: value for name, value in values.items() if value is not None and value is not False}
        if self.task_weights:
            options["task_weights"] = task_weight_map(self.task_weights, "--task_weights")
        return options

    def check_model_options(self, tasks: list[str], max_seq_length: int) -> None:
        """The model options, checked as CaMtlConfig checks them but on a config without weights, so that
        ``--pooling max``, ``--attention_blocks 0`` or a task weight for a task the run does not train
        stops the run before the tokenizer or the backbone is read."""
        CaMtlConfig(tasks=tasks, max_seq_length=max_seq_length, **self.model_options())


# Sampler options: option -> (the samplers that read it, how to choose one of them).
_SAMPLER_OPTIONS = {
    "sampling_temperature": (("temperature",), "add --task_sampling temperature"),
    "sampling_weights": (("temperature",), "add --task_sampling temperature"),
    "mtu_scoring_mode": (("mt-uncertainty",), "add --use_mt_uncertainty"),
    "percent_of_max_data_size": (
        ("uniform", "mt-uncertainty"),
        "add --uniform_mt_sampling or --use_mt_uncertainty",
    ),
}


@dataclass
class DataArguments:
    data_dir: list[str] | None = field(
        default=None,  # a task file's tasks name their own files: a run on them alone needs no --data_dir
        metadata={
            "help": "Data folders: GLUE in the official layout (download_glue_data.py), ../shared/data, ...;"
            " each task is read from the folder that holds it (not needed for --task_file tasks)",
            "nargs": "+",
        },
    )
    task_file: str | None = field(
        default=None,
        metadata={"help": "Your own tasks, declared in a YAML or JSON file (docs/task-files.md)"},
    )
    tasks: list[str] | None = field(
        default=None, metadata={"help": "Tasks to train on (default: all nine GLUE tasks)", "nargs": "+"}
    )
    max_seq_length: int | None = field(
        default=None,
        metadata={"help": "Sequences longer than this are truncated (default: a checkpoint's own, else 128)"},
    )
    overwrite_cache: bool = field(default=False, metadata={"help": "Rebuild the tokenized feature cache"})
    features_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where tokenized features are cached (default ~/.cache/camtl/features)"},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use the first N training rows per task"}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use the first N dev rows per task"})
    max_predict_samples: int | None = field(
        default=None, metadata={"help": "Use the first N test rows per task"}
    )
    task_sampling: str | None = field(
        default=None, metadata={"help": f"Task sampler: {', '.join(SAMPLERS)} (default proportional)"}
    )
    use_mt_uncertainty: bool = field(
        default=False, metadata={"help": "MT-Uncertainty sampling (same as --task_sampling mt-uncertainty)"}
    )
    uniform_mt_sampling: bool = field(
        default=False,
        metadata={
            "help": "Uniform epochs: alone, the uniform sampler; with MT-Uncertainty, its epoch length"
        },
    )
    percent_of_max_data_size: float = field(
        default=1.0,
        metadata={"help": "Uniform sampling: examples per task = this fraction of the largest task"},
    )
    sampling_temperature: float = field(
        default=2.0, metadata={"help": "Temperature sampling: p_t proportional to n_t ** (1 / T)"}
    )
    sampling_weights: list[str] | None = field(
        default=None,
        metadata={
            "help": "Temperature sampling: p_t proportional to w_t * n_t ** (1 / T), e.g. cola=3 (default 1)",
            "nargs": "+",
        },
    )
    pad_to_multiple_of: int | None = field(
        default=None,
        metadata={"help": "Round each batch's padded length up to a multiple (8 suits GPU kernels)"},
    )
    mtu_scoring_mode: str = field(
        default="train",
        metadata={
            "help": "MT-Uncertainty scores its pool with dropout on (train, the authors') or off (eval)"
        },
    )

    def resolve_sampler(self) -> str:
        """Map --task_sampling and the reference's seed flags onto one sampler name."""
        implied = (
            "mt-uncertainty" if self.use_mt_uncertainty else "uniform" if self.uniform_mt_sampling else None
        )
        chosen = self.task_sampling
        if chosen is not None and chosen not in SAMPLERS:
            raise UsageError(f"unknown --task_sampling '{chosen}': choose from {', '.join(SAMPLERS)}")
        if chosen is not None and implied is not None and chosen != implied and chosen != "mt-uncertainty":
            flag = "--use_mt_uncertainty" if self.use_mt_uncertainty else "--uniform_mt_sampling"
            raise UsageError(f"--task_sampling {chosen} conflicts with {flag}: keep one of them")
        if not 0 < self.percent_of_max_data_size <= 10:
            raise UsageError(
                f"--percent_of_max_data_size must be in (0, 10], got {self.percent_of_max_data_size}"
            )
        if self.mtu_scoring_mode not in ("train", "eval"):
            raise UsageError(f"--mtu_scoring_mode must be train or eval, got {self.mtu_scoring_mode!r}")
        sampler = chosen or implied or "proportional"
        if sampler == "temperature" and not self.sampling_temperature > 0:
            raise UsageError(
                "--sampling_temperature must be positive with temperature sampling,"
                f" got {self.sampling_temperature}"
            )
        self._check_options_apply(sampler)
        return sampler

    def sampling_weight_of(self, tasks: list[str]) -> list[float] | None:
        """Each trained task's ``--sampling_weights`` (1 when not named), in ``tasks``' order."""
        if not self.sampling_weights:
            return None
        weights = task_weight_map(self.sampling_weights, "--sampling_weights", positive=True)
        unknown = sorted(set(weights) - set(tasks))
        if unknown:
            raise UsageError(
                f"--sampling_weights names {', '.join(unknown)}, which this run does not train:"
                f" name tasks of {', '.join(tasks)}"
            )
        return [weights.get(task, 1.0) for task in tasks]

    def _check_options_apply(self, sampler: str) -> None:
        """A sampler's option set away from its default under another sampler would change nothing."""
        for name, (samplers, fix) in _SAMPLER_OPTIONS.items():
            value = getattr(self, name)
            if value != DataArguments.__dataclass_fields__[name].default and sampler not in samplers:
                shown = " ".join(value) if isinstance(value, list) else value
                raise UsageError(
                    f"--{name} {shown} changes nothing with {sampler} sampling: drop it, or {fix}"
                )


@dataclass
class CaMtlTrainingArguments(TrainingArguments):
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Training batch size per device"})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Evaluation batch size per device"})
    report_to: None | str | list[str] = field(
        default="tensorboard",
        metadata={"help": "Integrations to log to (default tensorboard; 'none' for none)"},
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow training into a non-empty output directory"}
    )
    warmup_steps: float | None = field(
        default=None,
        metadata={
            # no percent sign: argparse %-formats help strings, and --help failed on it
            "help": "Warmup steps, or a fraction of the steps below 1 (default 0.1, the paper's; 0: none)"
        },
    )
    warmup_proportion: float | None = field(
        default=None, metadata={"help": "Linear warmup over this fraction of the steps (default 0.1)"}
    )
    # Defaults for GPUs: every parameter gets a gradient in every layout (tests/test_model.py), the buffers
    # are constant tables, and the NaN filter of the logged loss would read the loss on the host each step.
    ddp_find_unused_parameters: bool | None = field(
        default=False, metadata={"help": "DDP: look for parameters without gradients (default False)"}
    )
    ddp_broadcast_buffers: bool | None = field(
        default=False, metadata={"help": "DDP: broadcast buffers every step (default False)"}
    )
    logging_nan_inf_filter: bool = field(
        default=False, metadata={"help": "Drop NaN/inf losses from the logged mean (default False)"}
    )
    dataloader_num_workers: int | None = field(
        default=None,
        metadata={"help": "Processes collating training batches (default: 2 per GPU, 0 on the CPU)"},
    )
    train_sampling_strategy: str = field(
        default="group_by_length",
        metadata={
            "help": "group_by_length (default: each batch of examples of similar length; the task mix of an"
            " epoch is unchanged) or random (batches padded to a random mix of lengths)"
        },
    )
    precision: str = field(
        default="auto",
        metadata={
            "help": f"{', '.join(PRECISIONS)}: auto (default) takes bf16 where the processor has it natively"
            " and it measures faster than fp32, fp32 elsewhere; --bf16 / --fp16 are bf16 / fp16"
        },
    )
    head_lr_multiplier: float = field(
        default=1.0,
        metadata={
            "help": "The task heads learn at this multiple of --learning_rate (default 1: the authors')"
        },
    )
    # Flags of the reference README that transformers dropped: accepted and mapped in __post_init__.
    evaluate_during_training: bool = field(default=False, metadata={"help": "Evaluate every --logging_steps"})
    per_gpu_train_batch_size: int | None = field(
        default=None, metadata={"help": "Old name of the batch size"}
    )
    per_gpu_eval_batch_size: int | None = field(
        default=None, metadata={"help": "Old name of the eval batch size"}
    )
    fp16_opt_level: str | None = field(default=None, metadata={"help": "Apex level: accepted, unnecessary"})
    tpu_num_cores: int | None = field(default=None, metadata={"help": "TPU cores (set by xla_spawn.py)"})
    tpu_metrics_debug: bool = field(default=False, metadata={"help": "Print TPU debug metrics"})
    logging_dir: str | None = field(
        default=None, metadata={"help": "TensorBoard log dir (default OUTPUT_DIR/runs)"}
    )
    no_cuda: bool = field(default=False, metadata={"help": "Old name of --use_cpu"})

    def __post_init__(self):
        self._map_authors_flags()
        if self.warmup_proportion is not None:
            if not 0 <= self.warmup_proportion < 1:
                raise UsageError(f"--warmup_proportion must be in [0, 1), got {self.warmup_proportion}")
            self.warmup_steps = self.warmup_proportion
        elif self.warmup_steps is None:  # not given (an explicit 0 means no warmup)
            self.warmup_steps = 0.1  # the paper's 10% linear warmup
        if self.dataloader_num_workers is None:
            # On the CPU a worker takes a core from the step; on a GPU it collates while the device computes.
            self.dataloader_num_workers = 2 if torch.cuda.is_available() and not self.use_cpu else 0
        if not (torch.cuda.is_available() or torch.backends.mps.is_available() or is_torch_xla_available()):
            # CPU-only machine: accelerate needs cpu=True for gloo DDP under torchrun and for bf16 autocast.
            self.use_cpu = True
        if self.output_dir is not None:
            self.logging_dir = self.logging_dir or os.path.join(self.output_dir, "runs")
            os.environ["TENSORBOARD_LOGGING_DIR"] = self.logging_dir
        for name in (
            "per_device_train_batch_size",
            "per_device_eval_batch_size",
            "gradient_accumulation_steps",
        ):
            if getattr(self, name) <= 0:
                raise UsageError(f"--{name} must be positive, got {getattr(self, name)}")
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise UsageError(
                f"--num_train_epochs must be positive (or set --max_steps), got {self.num_train_epochs}"
            )
        for name in ("seed", "data_seed"):
            seed = getattr(self, name)
            if seed is not None and not 0 <= seed < 2**32:  # numpy's seed range
                raise UsageError(f"--{name} must be in 0..{2**32 - 1}, got {seed}")
        check_options_camtl_applies(self)
        check_training_numbers(self)
        self._choose_precision()
        super().__post_init__()
        # A missing integration would otherwise fail when the Trainer starts, after the model is loaded.
        available = get_available_reporting_integrations()
        missing = [name for name in self.report_to if name not in available]
        if missing:
            raise UsageError(
                f"--report_to {' '.join(missing)}: not installed here"
                f" (available: {', '.join(available) or 'none'}): install it or use --report_to none"
            )

    def _choose_precision(self) -> None:
        """Resolve --precision (and the Trainer's --bf16 / --fp16, which name one) into the precision this
        run uses; ``precision_choice`` says why, for the run's settings."""
        named = [name for name in ("bf16", "fp16") if getattr(self, name)]
        if len(named) > 1 or (named and self.precision not in ("auto", named[0])):
            given = [f"--{name}" for name in named]
            if self.precision != "auto":
                given.append(f"--precision {self.precision}")
            raise UsageError(f"{' and '.join(given)} name different precisions: keep one")
        requested = named[0] if named else self.precision
        if torch.cuda.is_available() and not self.use_cpu:
            device = "cuda"
        else:
            device = "cpu" if self.use_cpu else "accelerator"
        self.precision_choice = choose_precision(requested, device)
        self.precision = self.precision_choice.precision
        self.bf16, self.fp16 = self.precision == "bf16", self.precision == "fp16"

    def _map_authors_flags(self) -> None:
        """The flags of the authors' README that transformers dropped, onto their current equivalents."""
        if self.per_gpu_train_batch_size is not None:
            logger.warning("--per_gpu_train_batch_size is --per_device_train_batch_size now; using it")
            self.per_device_train_batch_size = self.per_gpu_train_batch_size
        if self.per_gpu_eval_batch_size is not None:
            logger.warning("--per_gpu_eval_batch_size is --per_device_eval_batch_size now; using it")
            self.per_device_eval_batch_size = self.per_gpu_eval_batch_size
        if self.evaluate_during_training:
            logger.warning(
                "--evaluate_during_training: evaluating every --logging_steps (%s)", self.logging_steps
            )
            self.eval_strategy = "steps"
            self.eval_steps = self.logging_steps
        if self.fp16_opt_level is not None:
            logger.warning(
                "--fp16_opt_level is ignored: mixed precision uses torch.amp, NVIDIA apex is not needed"
            )
        if self.no_cuda:
            logger.warning("--no_cuda is --use_cpu now; using it")
            self.use_cpu = True
        if self.tpu_metrics_debug:
            self.debug = "tpu_metrics_debug"
