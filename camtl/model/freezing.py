"""Freezing the embeddings and a range of encoder layers, and the per-layer map of a model."""

from __future__ import annotations

import logging
import re

from camtl.errors import UsageError
from camtl.model.modeling import CaMtlModel
from camtl.model.modules import conditional_parameter_names

logger = logging.getLogger(__name__)

_LAYER_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def layer_prefixes(model: CaMtlModel) -> list[str]:
    """``named_parameters`` prefix of each encoder layer, e.g. 'backbone.encoder.layer.3.'."""
    return [f"backbone.{model.family.layers}.{index}." for index in range(model.config.num_layers)]


def embedding_prefixes(model: CaMtlModel) -> tuple[str, ...]:
    """The embeddings, and ELECTRA's projection of them to hidden_size."""
    return ("backbone.embeddings.", "backbone.embeddings_project.")


def layer_map(model: CaMtlModel) -> list[dict]:
    """One entry per layer: index, conditional (CLN), adapter, frozen (no backbone weight trains)."""
    conditional = conditional_parameter_names(model)
    parameters = dict(model.named_parameters())
    layers = []
    for index, (role, prefix) in enumerate(
        zip(model.config.layer_roles(), layer_prefixes(model), strict=True)
    ):
        backbone = [
            p for name, p in parameters.items() if name.startswith(prefix) and name not in conditional
        ]
        layers.append(
            {
                "index": index,
                "conditional": role.conditional_layer_norm,
                "adapter": role.adapter or model.config.has_stream,
                "frozen": not any(parameter.requires_grad for parameter in backbone),
            }
        )
    return layers


def format_layer_map(layers: list[dict]) -> str:
    """Compact per-layer map, consecutive layers with the same role grouped: '0-4 frozen | 5 plain | ...'."""

    def describe(layer: dict) -> str:
        return "+".join(part for part in ("frozen", "conditional", "adapter") if layer[part]) or "plain"

    groups: list[list] = []
    for layer in layers:
        if groups and groups[-1][2] == describe(layer):
            groups[-1][1] = layer["index"]
        else:
            groups.append([layer["index"], layer["index"], describe(layer)])
    return " | ".join(f"{first}{'' if first == last else f'-{last}'} {role}" for first, last, role in groups)


def parse_layer_range(spec: str, num_layers: int | None = None) -> tuple[int, int]:
    """(first, last) of a ``--freeze_encoder_layers`` spec "a-b" or "a", inside ``num_layers`` when known."""
    match = _LAYER_RANGE.match(spec.strip())
    if not match:
        raise UsageError(
            f"--freeze_encoder_layers '{spec}' cannot be read: write it as a-b, e.g. 0-4, or a single layer"
        )
    first, last = int(match.group(1)), int(match.group(2) or match.group(1))
    if first > last:
        raise UsageError(f"--freeze_encoder_layers '{spec}' is reversed: write {last}-{first}")
    if num_layers is not None and last >= num_layers:
        raise UsageError(
            f"--freeze_encoder_layers {spec} is outside this encoder's layers 0-{num_layers - 1}:"
            " pick layers inside"
        )
    return first, last


def freeze_encoder_layers(model: CaMtlModel, spec: str) -> list[dict]:
    """Freeze the embeddings and encoder layers a..b (spec "a-b" or "a"), conditional parameters excepted.

    Unlike the authors' name list (which misses the attention FiLM of frozen layers), every parameter of a
    conditional module stays trainable. Returns the per-layer map and logs it.
    """
    first, last = parse_layer_range(spec, model.config.num_layers)
    conditional = conditional_parameter_names(model)
    frozen = (*embedding_prefixes(model), *layer_prefixes(model)[first : last + 1])
    for name, parameter in model.named_parameters():
        if name.startswith(frozen) and name not in conditional:
            parameter.requires_grad_(False)
    layers = layer_map(model)
    logger.info("encoder layers: %s", format_layer_map(layers))
    return layers
