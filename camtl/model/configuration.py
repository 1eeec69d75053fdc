"""CaMtlConfig: a layout on a stock backbone, the task list, and the options that depart from the authors.

Every option defaults to the authors' computation (``ca_mtl_base.py`` / ``ca_mtl_large.py`` of their
code); docs/reproduction.md ("Differences from the authors' code") lists what each option changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from transformers import AutoConfig, PretrainedConfig

from camtl.errors import UsageError
from camtl.tasks import TASKS, TRAINABLE_TASKS, Task, canonical_task_name, register_saved

# Version of camtl's checkpoint layout: 2 wraps a stock Hugging Face backbone (the reference layouts);
# checkpoints without it were written by camtl 0.1's hand-written encoder.
CHECKPOINT_FORMAT = 2

LAYOUTS = ("none", "base", "large")
CONDITIONAL_MODULES = ("alignment", "attention", "layer_norm", "adapter")
ATTENTION_FILMS = ("shared", "per_block")
POOLINGS = ("cls", "mean", "auto")
LOSS_REDUCTIONS = ("task_mean", "example_mean")


@dataclass(frozen=True)
class LayerRole:
    """What one encoder layer carries in a layout."""

    conditional_attention: bool = False  # M(z) added to the attention scores
    conditional_layer_norm: bool = False  # CLN for the layer's norms
    adapter: bool = False  # base layout, top layer: the conditional adapter on the feed-forward output
    from_scratch: bool = False  # initialised randomly instead of loaded from the backbone


def layer_roles(
    layout: str, num_layers: int, modules: tuple[str, ...] = CONDITIONAL_MODULES
) -> list[LayerRole]:
    """The roles of the layers of an n-layer backbone, as the authors' encoders assign them.

    base (``MyBertEncoder9``): layers [0, n/2) plain, [n/2, n) with CLN, layer n-1 new (trained from
    scratch) with the adapter. large (``MyBertEncoder10``): the first n - n//2 layers plain, the last
    n//2 with CLN, and the adapter stream over all layers (``ConditionalStream``, not a layer role).
    Every layer of both layouts has conditional attention. ``modules`` switches parts off for ablations.
    """
    if layout not in LAYOUTS:
        raise UsageError(f"unknown layout '{layout}': choose from {', '.join(LAYOUTS)}")
    if layout == "none":
        return [LayerRole() for _ in range(num_layers)]
    first_conditional = num_layers // 2 if layout == "base" else num_layers - num_layers // 2
    top = num_layers - 1
    adapter = layout == "base" and "adapter" in modules
    return [
        LayerRole(
            conditional_attention="attention" in modules,
            conditional_layer_norm="layer_norm" in modules and index >= first_conditional,
            adapter=adapter and index == top,
            from_scratch=adapter and index == top,
        )
        for index in range(num_layers)
    ]


# Options that shape one conditional part: option -> (its default, the part, the layouts that have it).
# Set away from its default on a model without that part, such an option would change nothing.
_PART_OPTIONS = {
    "conditional_modules": (None, None, ("base", "large")),
    "attention_blocks": (None, "attention", ("base", "large")),
    "attention_film": ("shared", "attention", ("base", "large")),
    "adapter_activation": (None, "adapter", ("base", "large")),
    "stream_residual": (False, "adapter", ("large",)),
}


def _as_flag(name: str, value) -> str:
    """``--name value`` as it was written on the command line."""
    written = "" if value is True else " ".join(map(str, value)) if isinstance(value, list) else str(value)
    return f"--{name} {written}".rstrip()


def check_options_apply(layout: str, options: dict) -> None:
    """Refuse an option that cannot change a model of this layout and these conditional modules, e.g.
    ``--adapter_activation gelu`` with layout none: silently ignored, it would look like an ablation."""
    modules = options.get("conditional_modules") or CONDITIONAL_MODULES
    for name, (default, part, layouts) in _PART_OPTIONS.items():
        value = options.get(name, default)
        if value == default or value is False:
            continue
        shown = _as_flag(name, value)
        if layout not in layouts:
            wanted = " or ".join(layouts)
            raise UsageError(
                f"{shown} changes nothing with layout {layout}: drop it, or choose --layout {wanted}"
            )
        if part is not None and part not in modules:
            raise UsageError(
                f"{shown} shapes the conditional {part}, which --conditional_modules leaves out: drop it,"
                f" or add {part} to --conditional_modules"
            )


class CaMtlConfig(PretrainedConfig):
    """CA-MTL configuration: a layout on a stock backbone (its config as a nested dict) and a task list.

    Options (each off by default, i.e. the authors' computation):
      conditional_modules   which conditional parts exist (ablations); default all of CONDITIONAL_MODULES
      attention_blocks      N blocks of M(z); None = hidden_size // max_seq_length (the authors' rule)
      attention_film        "shared" (one gamma, beta for all blocks) or "per_block"
      adapter_activation    an activation between the adapter's projections (the authors have none)
      stream_residual       large layout: residual + CLN around each stream adapter
      pooling               "cls" (the backbone's [CLS] pooler, or the [CLS] state), "mean", or "auto"
                            (resolved when the model is built: the pooling the backbone declares)
      loss_reduction        "task_mean" (mean over the batch's tasks of each task's mean) or "example_mean"
    """

    model_type = "camtl"

    checkpoint_format: int = CHECKPOINT_FORMAT
    layout: str = "base"
    backbone: dict | None = None
    backbone_name: str = ""
    tasks: list[str] | None = None
    task_specs: dict[str, dict] | None = None  # each task's definition (camtl.tasks.Task.to_dict)
    max_seq_length: int = 128
    conditional_modules: list[str] | None = None
    attention_blocks: int | None = None
    attention_film: str = "shared"
    adapter_activation: str | None = None
    stream_residual: bool = False
    pooling: str = "cls"
    loss_reduction: str = "task_mean"
    task_weights: dict[str, float] | None = None  # task -> weight of its loss (default: the task's, 1)

    def __post_init__(self, **kwargs):
        self.backbone = dict(self.backbone or {"model_type": "bert"})
        for spec in (self.task_specs or {}).values():
            register_saved(Task.from_dict(spec))
        self.tasks = [canonical_task_name(task) for task in (self.tasks or TRAINABLE_TASKS)]
        self.task_specs = {task: TASKS[task].to_dict() for task in self.tasks}
        weights = {canonical_task_name(task): float(w) for task, w in (self.task_weights or {}).items()}
        for task, weight in weights.items():
            if task not in self.tasks:
                raise UsageError(
                    f"--task_weights names {task}, which is not one of the tasks ({', '.join(self.tasks)}):"
                    " drop it or add the task to --tasks"
                )
            if not (math.isfinite(weight) and weight >= 0):
                raise UsageError(f"--task_weights {task}={weight}: a weight must be a finite number >= 0")
        self.task_weights = weights or None
        if self.conditional_modules is not None and not self.conditional_modules:
            raise UsageError(
                "conditional_modules is empty: name at least one, or use layout 'none' for the model"
                " without conditional modules"
            )  # [] must not fall through to the default, which is all of them
        self.conditional_modules = list(self.conditional_modules or CONDITIONAL_MODULES)
        self._check()
        super().__post_init__(**kwargs)

    def _check(self) -> None:
        choices = {
            "layout": LAYOUTS,
            "attention_film": ATTENTION_FILMS,
            "pooling": POOLINGS,
            "loss_reduction": LOSS_REDUCTIONS,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise UsageError(f"unknown {key} '{getattr(self, key)}': choose from {', '.join(allowed)}")
        unknown = sorted(set(self.conditional_modules) - set(CONDITIONAL_MODULES))
        if unknown:
            raise UsageError(
                f"unknown conditional module(s) {', '.join(unknown)}:"
                f" choose from {', '.join(CONDITIONAL_MODULES)}"
            )
        if self.attention_blocks is not None and not 1 <= self.attention_blocks <= self.max_seq_length:
            raise UsageError(
                f"--attention_blocks {self.attention_blocks} must lie in 1..max_seq_length"
                f" ({self.max_seq_length})"
            )

    def backbone_config(self) -> PretrainedConfig:
        """The backbone's own config object (BertConfig, RobertaConfig, ...)."""
        settings = dict(self.backbone)
        return AutoConfig.for_model(settings.pop("model_type"), **settings)

    @property
    def hidden_size(self) -> int:
        return self.backbone["hidden_size"]

    @property
    def num_layers(self) -> int:
        return self.backbone["num_hidden_layers"]

    def layer_roles(self) -> list[LayerRole]:
        return layer_roles(self.layout, self.num_layers, tuple(self.conditional_modules))

    def has_module(self, name: str) -> bool:
        return self.layout != "none" and name in self.conditional_modules

    @property
    def has_stream(self) -> bool:
        """The large layout's adapter stream (its adapters are the large layout's conditional adapters)."""
        return self.layout == "large" and "adapter" in self.conditional_modules
