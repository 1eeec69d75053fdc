"""Putting CA-MTL's conditional modules into a stock Hugging Face encoder, without copying its classes.

- Conditional attention: each conditional layer's attention module gets a ``conditional_bias``
  (ConditionalAttentionBias). The backbone runs the attention function ``camtl_sdpa``, registered with
  transformers' attention interface (and its mask interface, so the padding mask reaches it): it adds
  M(z) to the padding mask and calls the stock SDPA function. Layers without a bias run stock SDPA
  unchanged (no mask at all for a batch without padding). DeBERTa does not use the interface: the
  bias is added where its relative-position scores are added.
- Conditional layer norm: the layer's norms are replaced by ConditionalLayerNorm modules that keep the
  names ``weight``/``bias``, so the backbone's weights load unchanged.
- Conditional alignment and the base layout's adapter: forward hooks on the embedding output and on
  the top layer's feed-forward output.

Every added module reads the batch's TaskCondition bound by ``CaMtlModel.forward``.
"""

from __future__ import annotations

import types

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from camtl.model.configuration import CaMtlConfig
from camtl.model.families import Family, family_of
from camtl.model.modules import (
    ConditionalAdapter,
    ConditionalAlignment,
    ConditionalAttentionBias,
    ConditionalLayerNorm,
    attention_block_count,
)

ATTENTION_IMPLEMENTATION = "camtl_sdpa"


def with_padding_mask(bias: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """bias (B, 1, L, L) plus the backbone's mask: boolean (True = attend), additive float, or None."""
    if mask is None:
        return bias
    if mask.dtype == torch.bool:
        return bias.masked_fill(~mask, torch.finfo(bias.dtype).min)
    return bias + mask


def conditional_sdpa(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, **kwargs):  # fmt: skip
    """The stock SDPA attention, with softmax(QK^T / sqrt(d_k) + M(z)) in conditional layers."""
    bias_module = getattr(module, "conditional_bias", None)
    if bias_module is not None:
        bias = bias_module.bound_bias(query.shape[-2]).to(query.dtype)  # (B, 1, L, L)
        attention_mask = with_padding_mask(bias, attention_mask)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register(ATTENTION_IMPLEMENTATION, conditional_sdpa)
AttentionMaskInterface.register(ATTENTION_IMPLEMENTATION, sdpa_mask)


def _task_bias(self, query_layer: torch.Tensor, key_layer: torch.Tensor) -> torch.Tensor:
    """M(z) for DeBERTa's scores (B*H, L, L): the same for every head."""
    bias = self.conditional_bias.bound_bias(query_layer.shape[-2])  # (B, 1, L, L)
    shape = (query_layer.shape[0], query_layer.shape[-2], key_layer.shape[-2])
    return bias.expand(-1, self.num_attention_heads, -1, -1).reshape(shape)


def _disentangled_bias_with_task_bias(
    self, query_layer, key_layer, relative_pos, rel_embeddings, scale_factor
):
    """DeBERTa: the relative-position scores (B*H, L, L) plus M(z); the scores are the number 0 when
    ``pos_att_type`` names neither c2p nor p2c."""
    relative = type(self).disentangled_attention_bias(
        self, query_layer, key_layer, relative_pos, rel_embeddings, scale_factor
    )
    dtype = relative.dtype if torch.is_tensor(relative) else query_layer.dtype
    return relative + _task_bias(self, query_layer, key_layer).to(dtype)


def _task_bias_only(self, query_layer, key_layer, relative_pos, rel_embeddings, scale_factor):
    """DeBERTa without relative attention: M(z) is the only bias of its scores."""
    return _task_bias(self, query_layer, key_layer).to(query_layer.dtype)


def _align_embeddings(module: nn.Module, args, output: torch.Tensor) -> torch.Tensor:
    return module.conditional_alignment.align(output)


def _adapt_post_norm(module: nn.Module, args, output: torch.Tensor) -> torch.Tensor:
    """Top layer, post-norm: CLN_z(a(h_layer, z) + h_attention); the FFN output gets (ffn, h_attention)."""
    return module.adapter(output, args[1])


def _adapt_pre_norm(module: nn.Module, args, output: torch.Tensor) -> torch.Tensor:
    """Top layer, pre-norm: CLN_z(a(h_layer, z) + h_layer); the attention output is not exposed."""
    return module.adapter(output, output)


def _conditional_norm(norm: nn.Module, condition_size: int) -> ConditionalLayerNorm:
    conditional = ConditionalLayerNorm(
        norm.weight.shape[0], condition_size, norm.eps, bias=getattr(norm, "bias", None) is not None
    )
    with torch.no_grad():
        conditional.weight.copy_(norm.weight)
        if conditional.bias is not None:
            conditional.bias.copy_(norm.bias)
    return conditional


def _replace(root: nn.Module, path: str, replacement: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, replacement)


def condition_backbone(backbone: nn.Module, config: CaMtlConfig) -> None:
    """Add the layout's conditional modules to ``backbone`` in place (names under its own modules)."""
    family = family_of(backbone.config.model_type)
    hidden_size, eps = config.hidden_size, norm_eps(backbone.config)
    if config.has_module("alignment"):
        target = family.embedding_output_of(backbone)
        target.conditional_alignment = ConditionalAlignment(hidden_size, hidden_size)
        target.register_forward_hook(_align_embeddings)
    num_blocks = config.attention_blocks or attention_block_count(hidden_size, config.max_seq_length)
    for layer, role in zip(family.layers_of(backbone), config.layer_roles(), strict=True):
        if role.conditional_attention:
            _add_attention_bias(layer.get_submodule(family.attention), family, config, num_blocks)
        if role.conditional_layer_norm:
            for path in (family.attention_norm, family.ffn_norm):
                norm = layer.get_submodule(path)
                if not isinstance(norm, nn.Identity):  # ModernBERT's layer 0 has no attention norm
                    _replace(layer, path, _conditional_norm(norm, hidden_size))
        if role.adapter:
            _add_adapter(layer, family, config, eps)
    if family.bias_via == "attention_interface" and config.has_module("attention"):
        backbone.set_attn_implementation(ATTENTION_IMPLEMENTATION)


def _add_attention_bias(attention: nn.Module, family: Family, config: CaMtlConfig, num_blocks: int) -> None:
    attention.conditional_bias = ConditionalAttentionBias(
        config.hidden_size,
        config.max_seq_length,
        num_blocks,
        per_block_film=config.attention_film == "per_block",
    )
    if family.bias_via == "disentangled":
        bias = _disentangled_bias_with_task_bias
        if not attention.relative_attention:  # the attention adds its bias only with relative attention on
            attention.relative_attention, attention.pos_dropout = True, nn.Identity()
            bias = _task_bias_only
        attention.disentangled_attention_bias = types.MethodType(bias, attention)


def _add_adapter(layer: nn.Module, family: Family, config: CaMtlConfig, eps: float) -> None:
    adapter = ConditionalAdapter(config.hidden_size, config.hidden_size // 3, eps, config.adapter_activation)
    host = layer if family.pre_norm else layer.get_submodule(family.ffn_output)
    host.adapter = adapter
    host.register_forward_hook(_adapt_pre_norm if family.pre_norm else _adapt_post_norm)


def norm_eps(backbone_config) -> float:
    """The epsilon of the backbone's layer norms (``layer_norm_eps``, ModernBERT's ``norm_eps``)."""
    return getattr(backbone_config, "layer_norm_eps", None) or getattr(backbone_config, "norm_eps", 1e-12)
