"""The parameter report: totals, the conditional share, and ratios to one backbone and to T models."""

from __future__ import annotations

import torch
from transformers import AutoModel

from camtl.model.freezing import format_layer_map, layer_map
from camtl.model.modeling import CaMtlModel
from camtl.model.modules import conditional_parameter_names


def _backbone_parameter_count(model: CaMtlModel) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in AutoModel.from_config(model.config.backbone_config()).parameters())


def parameter_report(model: CaMtlModel) -> dict:
    """Parameter counts: total, trainable, backbone, conditional, heads, the per-layer map, and ratios to one
    stock backbone and to T single-task models (T backbones, each with its own head)."""
    conditional_names = conditional_parameter_names(model)
    total = trainable = conditional = heads = 0
    for name, parameter in model.named_parameters():
        count = parameter.numel()
        total += count
        trainable += count if parameter.requires_grad else 0
        if name in conditional_names:
            conditional += count
        elif name.startswith("heads."):
            heads += count
    backbone = _backbone_parameter_count(model)
    single_task_models = sum(backbone + (model.config.hidden_size + 1) * n for n in model.heads.num_labels)
    return {
        "total": total,
        "trainable": trainable,
        "backbone": total - conditional - heads,
        "conditional": conditional,
        "heads": heads,
        "layers": layer_map(model),
        "ratio_to_backbone": total / backbone,
        "ratio_to_single_task_models": total / single_task_models,
    }


def format_parameter_report(report: dict) -> str:
    """The report as a few aligned lines for a terminal."""
    rows = ("total", "trainable", "backbone", "conditional", "heads")
    lines = [f"{key:<13}{report[key]:>14,}" for key in rows]
    lines.append(f"{'vs one backbone':<15}{report['ratio_to_backbone']:>12.3f}x")
    lines.append(f"{'vs T models':<15}{report['ratio_to_single_task_models']:>12.3f}x")
    lines.append(f"layers       {format_layer_map(report['layers'])}")
    return "\n".join(lines)
