"""The authors' CA-MTL code (../shared/reference/ca-mtl-authors) as a test oracle under transformers 5.

Their code was written for transformers 2.11. The shims below only make its imports resolve and its
``init_weights`` call go through transformers 5's ``post_init``; none of them touches a computation.
``to_reference_state`` renames a camtl state dict into their parameter names, so one set of weights
can be loaded into both models.
"""

from __future__ import annotations

import importlib
import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel
from transformers.models.bert import modeling_bert

from tests.conftest import required_folder

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "ca-mtl-authors"
NUM_LABELS = {
    "cola": 2,
    "sst-2": 2,
    "mrpc": 2,
    "sts-b": 1,
    "qqp": 2,
    "mnli": 3,
    "qnli": 2,
    "rte": 2,
    "wnli": 2,
}


def _placeholder(name: str) -> type:
    """Stands in for a transformers 2.11 name that their data code imports but the model never calls."""
    return type(name, (), {})


def _install_import_shims() -> None:
    optimization = importlib.import_module("transformers.optimization")
    if not hasattr(optimization, "AdamW"):
        optimization.AdamW = torch.optim.AdamW
    # transformers.modeling_bert moved to transformers.models.bert.modeling_bert.
    sys.modules.setdefault("transformers.modeling_bert", modeling_bert)
    # Names of transformers 2.11 that were removed; only their data and trainer code imports most of them.
    # Set straight into the module's namespace: the lazy module's attribute hooks would resolve them.
    shims = {
        "modeling_bert": modeling_bert,
        "glue_tasks_num_labels": NUM_LABELS,
        "glue_output_modes": {t: "regression" if n == 1 else "classification" for t, n in NUM_LABELS.items()},
        "glue_processors": {},
        "glue_compute_metrics": {},
        "InputExample": _placeholder("InputExample"),
        "InputFeatures": _placeholder("InputFeatures"),
    }
    package = sys.modules["transformers"]  # transformers may have replaced its module object since import
    vars(package).update({k: v for k, v in shims.items() if k not in vars(package)})


def _init_weights_through_post_init(self) -> None:
    if getattr(self, "_inside_post_init", False):
        PreTrainedModel.init_weights(self)
        return
    self._inside_post_init = True
    try:
        self.post_init()
    finally:
        self._inside_post_init = False


def import_reference() -> types.SimpleNamespace:
    """The authors' model, encoders and trainer modules; fails under CI=true when the code is missing."""
    required_folder(REFERENCE)
    _install_import_shims()
    if str(REFERENCE) not in sys.path:
        sys.path.insert(0, str(REFERENCE))
    ca_mtl = importlib.import_module("src.model.ca_mtl")
    trainer = importlib.import_module("src.mtl_trainer")
    # transformers 5 initialises through post_init (which calls init_weights); their __init__ methods call
    # init_weights directly.
    for cls in (ca_mtl.CaMtl, ca_mtl.CaMtlBaseEncoder, ca_mtl.CaMtlLargeEncoder):
        cls.init_weights = _init_weights_through_post_init
    return types.SimpleNamespace(CaMtl=ca_mtl.CaMtl, MultiTaskTrainer=trainer.MultiTaskTrainer)


@dataclass
class ReferenceArguments:
    """The attributes of their ModelArguments / DataArguments that the model reads."""

    model_name_or_path: str
    tasks: list[str]
    max_seq_length: int


def build_reference(reference, layout: str, bert_config, tasks: list[str], max_seq_length: int):
    arguments = ReferenceArguments(f"CA-MTL-{layout}", tasks, max_seq_length)
    return reference.CaMtl(bert_config, arguments, arguments)


# camtl name -> authors' name, inside layer i (first match wins), for "backbone."-stripped names. {attention},
# {intermediate} and {output} become new_attention, ... in the base layout's top layer (trained from scratch).
_IN_LAYER = (
    (r"attention\.self\.conditional_bias\.weight$", "{attention}.self.random_weight_matrix"),
    (
        r"attention\.self\.conditional_bias\.film\.projection\.",
        "{attention}.self.cond_block_diag_attn.gb_weights.",
    ),
    (
        r"attention\.(.*)LayerNorm\.film\.projection\.",
        r"{attention}.\2LayerNorm.ln_weight_modulation.gb_weights.",
    ),
    (r"attention\.", "{attention}."),
    (r"output\.adapter\.bottleneck\.condition_transformation\.", "adapter.bottleneck.emb_transf."),
    (r"output\.adapter\.bottleneck\.film\.projection\.", "adapter.bottleneck.hidden_modulation.gb_weights."),
    (r"output\.adapter\.bottleneck\.down\.", "adapter.bottleneck.down_proj_layer."),
    (r"output\.adapter\.bottleneck\.up\.", "adapter.bottleneck.up_proj_layer."),
    (r"output\.adapter\.norm\.film\.projection\.", "adapter.condlayernorm.ln_weight_modulation.gb_weights."),
    (r"output\.adapter\.norm\.", "adapter.condlayernorm."),
    (r"output\.LayerNorm\.film\.projection\.", "{output}.LayerNorm.ln_weight_modulation.gb_weights."),
    (r"intermediate\.", "{intermediate}."),
    (r"output\.", "{output}."),
)
_RULES = (
    (r"^embeddings\.conditional_alignment\.projection\.", "conditional_alignment.gb_weights."),
    *(
        (r"^encoder\.layer\.(\d+)\." + pattern, r"encoder.layer.\1." + target)
        for pattern, target in _IN_LAYER
    ),
)
_OUTSIDE_BACKBONE = (
    (r"^task_embedding\.embedding\.", "task_type_embeddings."),
    (r"^task_embedding\.transformation\.", "encoder.task_transformation."),
    (r"^stream\.adapters\.(\d+)\.condition_transformation\.", r"encoder.adapter_layer.\1.emb_transf."),
    (
        r"^stream\.adapters\.(\d+)\.film\.projection\.",
        r"encoder.adapter_layer.\1.hidden_modulation.gb_weights.",
    ),
    (r"^stream\.adapters\.(\d+)\.down\.", r"encoder.adapter_layer.\1.down_proj_layer."),
    (r"^stream\.adapters\.(\d+)\.up\.", r"encoder.adapter_layer.\1.up_proj_layer."),
)


def _reference_name(name: str, top_layer: int | None) -> str:
    for pattern, replacement in _OUTSIDE_BACKBONE:
        if re.match(pattern, name):
            return "bert." + re.sub(pattern, replacement, name)
    name = name.removeprefix("backbone.")
    for pattern, replacement in _RULES:
        match = re.match(pattern, name)
        if match:
            fresh = top_layer is not None and match.re.groups > 0 and int(match.group(1)) == top_layer
            names = {
                part: ("new_" if fresh else "") + part for part in ("attention", "intermediate", "output")
            }
            return "bert." + re.sub(pattern, replacement.format(**names), name)
    return "bert." + name


def to_reference_state(model) -> dict[str, torch.Tensor]:
    """camtl's state dict under the authors' names; the joint head is cut into their per-task decoders."""
    config = model.config
    top = config.num_layers - 1 if config.layout == "base" else None
    state = {}
    for name, value in model.state_dict().items():
        if not name.startswith("heads."):
            state[_reference_name(name, top)] = value
    weight, bias = model.heads.classifier.weight, model.heads.classifier.bias
    start = 0
    for index, count in enumerate(model.heads.num_labels):
        state[f"decoders.{index}.model.weight"] = weight[start : start + count]
        state[f"decoders.{index}.model.bias"] = bias[start : start + count]
        start += count
    return state
