"""The conditional modules of CA-MTL (Pilault et al., ICLR 2021, section 2), as the authors' code has them.

Every module takes the task condition of each example, so one forward pass serves a batch that mixes
tasks. Shapes: B batch, L sequence length, d hidden size, T tasks.

Modules that a stock Hugging Face backbone calls with hidden states only (a layer norm, the attention
function) are ``TaskConditioned``: the model binds the batch's ``TaskCondition`` to them before each
forward (``CaMtlModel.forward``), so no signature of the backbone changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN


class ConditionalModule(nn.Module):
    """Marks the modules added by CA-MTL: their parameters are the conditional (task-adaptive) ones.

    Freezing and the parameter report tell conditional parameters from backbone ones by this type.
    """


def conditional_parameter_names(model: nn.Module) -> set[str]:
    """Names of the parameters that live inside a ConditionalModule, as in ``model.named_parameters()``."""
    names = set()
    for module_name, module in model.named_modules():
        if isinstance(module, ConditionalModule):
            prefix = f"{module_name}." if module_name else ""
            names.update(prefix + name for name, _ in module.named_parameters())
    return names


@dataclass
class TaskCondition:
    """What conditions the modules for one batch.

    embedding: e_i (B, d), the learned task embedding (read by the conditional alignment);
    z: z_i = W e_i + b (B, d), its shared transformation (read by attention, layer norms and adapters).
    """

    embedding: torch.Tensor
    z: torch.Tensor


class TaskConditioned:
    """Mixin for modules that the backbone calls without the task condition: ``bind`` sets it per batch.

    The binding stays until the next batch, so gradient checkpointing, which replays a layer's
    forward during the backward pass, replays it with the same condition.
    """

    bound_condition: TaskCondition | None = None

    def bind(self, condition: TaskCondition) -> None:
        self.bound_condition = condition

    def condition(self) -> TaskCondition:
        if self.bound_condition is None:
            raise RuntimeError(f"{type(self).__name__} was called before a task condition was bound")
        return self.bound_condition


class TaskEmbedding(ConditionalModule):
    """e_i = E[t_i] (an embedding per task) and z_i = W e_i + b (one linear map shared by all tasks).

    task_ids (B,) -> TaskCondition(embedding (B, d), z (B, d)).
    """

    def __init__(self, num_tasks: int, hidden_size: int):
        super().__init__()
        self.embedding = nn.Embedding(num_tasks, hidden_size)
        self.transformation = nn.Linear(hidden_size, hidden_size)

    def forward(self, task_ids: torch.Tensor) -> TaskCondition:
        embedding = self.embedding(task_ids)  # (B, d)
        return TaskCondition(embedding=embedding, z=self.transformation(embedding))


class FiLM(ConditionalModule):
    """Feature-wise linear modulation: FiLM(x, z) = (1 + gamma(z)) * x + beta(z), [gamma; beta] = W z + b.

    ``x`` is (B, ..., features) or a parameter shared by the batch (..., features); the output is
    (B, ..., features) either way.
    """

    def __init__(self, condition_size: int, features: int):
        super().__init__()
        self.features = features
        self.projection = nn.Linear(condition_size, 2 * features)

    def modulation(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """gamma(z), beta(z), each (B, features)."""
        gamma, beta = self.projection(z).chunk(2, dim=-1)
        return gamma, beta

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.modulation(z)
        # (B, 1, ..., 1, features): broadcast over every axis of x between batch and features
        shape = (z.shape[0],) + (1,) * (max(x.dim(), 2) - 2) + (self.features,)
        return torch.addcmul(beta.view(shape), 1 + gamma.view(shape), x)  # one pass over x, not two


class ConditionalAlignment(FiLM, TaskConditioned):
    """Conditional alignment: FiLM of the embedding output (B, L, d) by the task embedding e_i (not z_i)."""

    def align(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self(embeddings, self.condition().embedding)


def attention_block_count(hidden_size: int, max_seq_length: int) -> int:
    """N, the number of diagonal blocks of M(z): hidden_size // max_seq_length, at least 1.

    The authors' code asserts hidden_size % max_seq_length == 0 and uses N = hidden_size // max_seq_length;
    this is the same N whenever their constraint holds, and the floor (at least one block) otherwise.
    """
    return max(1, hidden_size // max_seq_length)


class ConditionalAttentionBias(ConditionalModule, TaskConditioned):
    """M(z), the task-conditioned block-diagonal attention bias: softmax(QK^T / sqrt(d_k) + M(z)) V.

    One learned matrix W of L_max x w, w = ceil(L_max / N), starts at zero. FiLM modulates its columns,
    F(z) = (1 + gamma(z)) * W + beta(z) with gamma, beta in R^w (one pair for all blocks; with
    ``per_block_film`` one pair per block), and F is cut into consecutive row blocks of w rows that
    become the diagonal blocks of an L_max x L_max matrix:

        M(z)[i, j] = F(z)[i, j mod w]  if floor(i / w) == floor(j / w),  else 0.

    This is the authors' chunk + block_diag + crop (``CBDA``) for every L_max, N. A batch padded to
    L <= L_max gets the top-left L x L corner, which is what the authors' padding to L_max computes
    on the real tokens. The same bias goes to every head.
    """

    def __init__(
        self, condition_size: int, max_seq_length: int, num_blocks: int, per_block_film: bool = False
    ):
        super().__init__()
        self.max_seq_length = max_seq_length
        self.num_blocks = num_blocks
        self.block_size = math.ceil(max_seq_length / num_blocks)
        self.per_block_film = per_block_film
        self.weight = nn.Parameter(torch.zeros(max_seq_length, self.block_size))
        self.film = FiLM(condition_size, (num_blocks if per_block_film else 1) * self.block_size)

    def forward(self, z: torch.Tensor, seq_length: int) -> torch.Tensor:
        """(B, L, L) bias for a batch padded to ``seq_length`` = L <= max_seq_length."""
        if seq_length > self.max_seq_length:
            raise ValueError(f"sequence length {seq_length} exceeds max_seq_length {self.max_seq_length}")
        batch_size, w = z.shape[0], self.block_size
        # Index tables of a few hundred entries, rebuilt per call: no buffer to save, load or re-initialise.
        block = torch.arange(seq_length, device=z.device) // w  # (L,): the block of each row and column
        gamma, beta = self.film.modulation(z)  # (B, w) or (B, N * w)
        if self.per_block_film:
            gamma = gamma.view(batch_size, -1, w)[:, block]  # (B, L, w): each row its block's pair
            beta = beta.view(batch_size, -1, w)[:, block]
        else:
            gamma, beta = gamma[:, None, :], beta[:, None, :]  # (B, 1, w)
        blocks = torch.addcmul(beta, 1 + gamma, self.weight[:seq_length])  # (B, L, w)
        # Tiling + a constant 0/1 mask, not a gather: a gather's backward is an accumulating index_put.
        tiled = blocks.repeat(1, 1, math.ceil(seq_length / w))[:, :, :seq_length]  # (B, L, L): [i, j mod w]
        same_block = (block[:, None] == block[None, :]).to(blocks.dtype)  # (L, L)
        return tiled * same_block

    def bound_bias(self, seq_length: int) -> torch.Tensor:
        """The bias for the bound condition, (B, 1, L, L) to broadcast over heads."""
        return self(self.condition().z, seq_length).unsqueeze(1)


class ConditionalLayerNorm(nn.Module, TaskConditioned):
    """Conditional layer norm: CLN(x, z) = weight(z) * (x - mean) / std + bias, weight(z) = FiLM(weight, z).

    ``weight`` and ``bias`` keep the names of the layer norm it replaces and load from it: they are
    backbone weights (``bias`` is None where the backbone's norm has none, as in ModernBERT). Only the
    FiLM inside is a ConditionalModule, which is why this class is a plain nn.Module.
    """

    def __init__(self, hidden_size: int, condition_size: int, eps: float, bias: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.bias = nn.Parameter(torch.zeros(hidden_size)) if bias else None
        self.film = FiLM(condition_size, hidden_size)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        z = self.condition().z if z is None else z
        weight = self.film(self.weight, z)  # (B, d)
        normalized = F.layer_norm(x, x.shape[-1:], eps=self.eps)
        shape = (z.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
        if self.bias is None:
            return normalized * weight.view(shape)
        return torch.addcmul(self.bias, normalized, weight.view(shape))  # one pass over (B, L, d), not two


class ConditionalBottleneck(ConditionalModule):
    """The authors' conditional bottleneck: a(h, z) = up(act(down(FiLM(h, W_a z + b_a)))).

    Its own linear map of z, a FiLM of the hidden states, a down-projection to ``bottleneck_size``
    (d // 3) and an up-projection back to d. The authors put no activation between the projections
    (``activation`` None); ``--adapter_activation gelu`` adds one. No residual and no norm here:
    where the output goes is the layout's business.
    """

    def __init__(self, hidden_size: int, bottleneck_size: int, activation: str | None = None):
        super().__init__()
        self.condition_transformation = nn.Linear(hidden_size, hidden_size)
        self.film = FiLM(hidden_size, hidden_size)
        self.down = nn.Linear(hidden_size, bottleneck_size)
        self.activation = ACT2FN[activation] if activation else nn.Identity()
        self.up = nn.Linear(bottleneck_size, hidden_size)

    def forward(self, hidden_states: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        modulated = self.film(hidden_states, self.condition_transformation(z))  # (B, L, d)
        return self.up(self.activation(self.down(modulated)))


class ConditionalAdapter(ConditionalModule, TaskConditioned):
    """The base layout's top-layer adapter: out = CLN_z(a(h_layer, z) + h_attention).

    ``h_layer`` is the layer's output and ``h_attention`` its attention sub-layer's output (the
    residual comes from the attention output, as in the authors' code). ``norm`` is the adapter's own
    conditional layer norm: its weight and bias are new, so all of the adapter is conditional.
    """

    def __init__(self, hidden_size: int, bottleneck_size: int, eps: float, activation: str | None = None):
        super().__init__()
        self.bottleneck = ConditionalBottleneck(hidden_size, bottleneck_size, activation)
        self.norm = ConditionalLayerNorm(hidden_size, hidden_size, eps)

    def forward(self, layer_output: torch.Tensor, attention_output: torch.Tensor) -> torch.Tensor:
        z = self.condition().z
        return self.norm(self.bottleneck(layer_output, z) + attention_output, z)


class ConditionalStream(ConditionalModule):
    """The large layout's second stream: s_0 = 0, s_i = a_i(h_i + s_{i-1}, z), the encoder output is s_n.

    h_i is layer i's output; one ConditionalBottleneck a_i per layer (the authors' ``adapter_layer``).
    With ``residual`` (camtl's redesign, ``--stream_residual``) each step is
    s_i = CLN_z(a_i(x_i, z) + x_i), x_i = h_i + s_{i-1}, which adds a residual and a norm per layer.
    """

    def __init__(
        self, num_layers: int, hidden_size: int, bottleneck_size: int, eps: float, activation: str | None,
        residual: bool = False,
    ):  # fmt: skip
        super().__init__()
        self.adapters = nn.ModuleList(
            ConditionalBottleneck(hidden_size, bottleneck_size, activation) for _ in range(num_layers)
        )
        self.norms = (
            nn.ModuleList(ConditionalLayerNorm(hidden_size, hidden_size, eps) for _ in range(num_layers))
            if residual
            else None
        )

    def forward(self, layer_outputs: tuple[torch.Tensor, ...], z: torch.Tensor) -> torch.Tensor:
        stream = torch.zeros_like(layer_outputs[0])  # (B, L, d)
        for index, (hidden, adapter) in enumerate(zip(layer_outputs, self.adapters, strict=True)):
            x = hidden + stream
            stream = adapter(x, z)
            if self.norms is not None:
                stream = self.norms[index](stream + x, z)
        return stream
