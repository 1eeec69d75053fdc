"""The backbone families camtl conditions, one small table row each: where their modules live.

camtl wraps the stock ``AutoModel`` of a family and puts CA-MTL's pieces into it (``conditioning.py``);
this table is all it needs to know about a family. Paths are ``nn.Module.get_submodule`` paths:
``layers`` from the backbone, the others from one layer.

Post-norm families (BERT, RoBERTa, ELECTRA, DeBERTa-v2) normalise after each sub-layer: conditional
layer norm replaces the norm after attention and the one after the feed-forward, as in the authors'
code. ModernBERT is pre-norm and has no norm after its sub-layers: conditional layer norm replaces
the norms before attention and before the feed-forward (layer 0 has no attention norm, an Identity,
and keeps it), and its base-layout adapter takes its residual from the layer output (see
``conditioning.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from camtl.errors import UsageError


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]
    layers: str  # the ModuleList of encoder layers
    attention: str  # in a layer: the attention module that M(z) is added in
    attention_norm: str  # in a layer: the norm after (post-norm) or before (pre-norm) attention
    ffn_norm: str  # in a layer: the norm after (post-norm) or before (pre-norm) the feed-forward
    ffn_output: str | None  # post-norm: the module called as (ffn_hidden, attention_output) -> layer output
    pre_norm: bool = False
    final_norm: str | None = None  # pre-norm: the norm after the last layer, from the backbone
    token_types: bool = True  # the forward takes token_type_ids
    # The padding mask handed to the backbone as (B, 1, 1, L) booleans: passed to every layer as it is, so the
    # backbone neither materialises (B, 1, L, L) nor checks on the host whether a batch has padding.
    # ModernBERT builds sliding-window masks from the 2-D mask; DeBERTa builds its own.
    broadcast_mask: bool = True
    bias_via: str = (
        "attention_interface"  # or "disentangled" (DeBERTa: added to the relative-position scores)
    )

    def layers_of(self, backbone: nn.Module) -> nn.ModuleList:
        return backbone.get_submodule(self.layers)

    @staticmethod
    def embedding_output_of(backbone: nn.Module) -> nn.Module:
        """The module whose output enters the first layer (ELECTRA projects its embeddings to hidden_size)."""
        return getattr(backbone, "embeddings_project", None) or backbone.get_submodule("embeddings")


_BERT_LIKE = {
    "layers": "encoder.layer",
    "attention": "attention.self",
    "attention_norm": "attention.output.LayerNorm",
    "ffn_norm": "output.LayerNorm",
    "ffn_output": "output",
}

FAMILIES: tuple[Family, ...] = (
    Family("BERT", ("bert",), **_BERT_LIKE),
    Family("RoBERTa", ("roberta", "xlm-roberta"), **_BERT_LIKE),
    Family("ELECTRA", ("electra",), **_BERT_LIKE),
    Family("DeBERTa-v2/v3", ("deberta-v2",), **_BERT_LIKE, bias_via="disentangled", broadcast_mask=False),
    Family(
        "ModernBERT",
        ("modernbert",),
        layers="layers",
        attention="attn",
        attention_norm="attn_norm",
        ffn_norm="mlp_norm",
        ffn_output=None,
        pre_norm=True,
        final_norm="final_norm",
        token_types=False,
        broadcast_mask=False,
    ),
)

SUPPORTED = ", ".join(family.name for family in FAMILIES)


def family_of(model_type: str) -> Family:
    """The family of a backbone's ``model_type``; any other type is a UsageError naming the supported ones."""
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    raise UsageError(f"model type '{model_type}' is not supported: camtl conditions {SUPPORTED} backbones")
