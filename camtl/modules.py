"""The conditional modules of CA-MTL (Pilault et al., ICLR 2021, section 2).

Every module takes the task embedding ``z`` of each example, shape (B, d_cond), and computes its
per-example parameters from it, so one forward pass serves a batch that mixes tasks.
"""

from __future__ import annotations

import math

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


class TaskEmbedding(ConditionalModule):
    """z_i = W e_i + b: a learned embedding e_i per task, then a linear map shared by all tasks.

    task_ids (B,) -> z (B, d_cond).
    """

    def __init__(self, num_tasks: int, task_embedding_size: int, condition_size: int):
        super().__init__()
        self.embedding = nn.Embedding(num_tasks, task_embedding_size)
        self.projection = nn.Linear(task_embedding_size, condition_size)

    def forward(self, task_ids: torch.Tensor) -> torch.Tensor:
        return self.projection(self.embedding(task_ids))


class FiLM(ConditionalModule):
    """Feature-wise linear modulation: FiLM(x, z) = (1 + gamma(z)) * x + beta(z), gamma and beta linear in z.

    ``x`` is (B, ..., features) or a parameter of shape (features,) shared by the batch; the output is
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
        shape = (z.shape[0],) + (1,) * (x.dim() - 2) + (self.features,)
        return torch.addcmul(beta.view(shape), 1 + gamma.view(shape), x)  # one pass over x, not two


class ConditionalAlignment(FiLM):
    """Conditional alignment: FiLM on the embedding output (B, L, H): h_0 = (1 + gamma(z)) * E + beta(z)."""


class ConditionalAttentionBias(ConditionalModule):
    """The task-conditioned block-diagonal attention bias M(z) of conditional attention.

    softmax(Q K^T / sqrt(d_k) + M(z)) V with M(z) = diag(A_1(z), ..., A_N(z)) and
    A_n(z) = (1 + gamma_n(z)) * A_n + beta_n(z), where each A_n is a learned s x s matrix,
    s = ceil(L_max / N), and gamma_n, beta_n in R^s scale and shift the columns of A_n (the same for
    every row). The N*s x N*s matrix is cropped to L_max; a batch of length L gets its top-left L x L.
    """

    def __init__(self, condition_size: int, max_seq_length: int, num_blocks: int):
        super().__init__()
        self.max_seq_length = max_seq_length
        self.num_blocks = num_blocks
        self.block_size = math.ceil(max_seq_length / num_blocks)
        self.blocks = nn.Parameter(torch.zeros(num_blocks, self.block_size, self.block_size))
        self.film = FiLM(condition_size, num_blocks * self.block_size)

    def forward(self, z: torch.Tensor, seq_length: int) -> torch.Tensor:
        """(B, L, L) bias for a batch padded to ``seq_length`` = L <= max_seq_length."""
        if seq_length > self.max_seq_length:
            raise ValueError(f"sequence length {seq_length} exceeds max_seq_length {self.max_seq_length}")
        batch_size, n, s = z.shape[0], self.num_blocks, self.block_size
        gamma, beta = self.film.modulation(z)
        gamma, beta = gamma.view(batch_size, n, 1, s), beta.view(batch_size, n, 1, s)
        blocks = (1 + gamma) * self.blocks + beta  # (B, N, s, s)
        # Block n goes to rows and columns [n*s, (n+1)*s); the identity over blocks zeroes all other blocks.
        identity = torch.eye(n, dtype=blocks.dtype, device=blocks.device)
        bias = torch.einsum("bnij,nm->bnimj", blocks, identity).reshape(batch_size, n * s, n * s)
        return bias[:, :seq_length, :seq_length]


class ConditionalLayerNorm(nn.Module):
    """Conditional layer norm: CLN(x, z) = weight(z) * (x - mean) / std + bias, weight(z) = FiLM(weight, z).

    ``weight`` and ``bias`` keep BERT's ``LayerNorm`` names and load from it: they are backbone weights.
    Only the FiLM inside is a ConditionalModule, which is why this class is a plain nn.Module.
    """

    def __init__(self, hidden_size: int, condition_size: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.bias = nn.Parameter(torch.zeros(hidden_size))
        self.film = FiLM(condition_size, hidden_size)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        weight = self.film(self.weight, z)  # (B, H)
        normalized = F.layer_norm(x, x.shape[-1:], eps=self.eps)
        return torch.addcmul(self.bias, normalized, weight[:, None, :])


class ConditionalAdapter(ConditionalModule):
    """Conditional bottleneck adapter: out = CLN_z(up(act(down(FiLM_z(h)))) + h).

    down: H -> adapter_size (H // 3 by default), up: adapter_size -> H. All of it is conditional,
    the layer norm's weight and bias included (they are not BERT weights).
    """

    def __init__(self, hidden_size: int, adapter_size: int, condition_size: int, hidden_act: str, eps: float):
        super().__init__()
        self.film = FiLM(condition_size, hidden_size)
        self.down = nn.Linear(hidden_size, adapter_size)
        self.activation = ACT2FN[hidden_act]
        self.up = nn.Linear(adapter_size, hidden_size)
        self.LayerNorm = ConditionalLayerNorm(hidden_size, condition_size, eps)

    def forward(self, hidden_states: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        bottleneck = self.up(self.activation(self.down(self.film(hidden_states, z))))
        return self.LayerNorm(bottleneck + hidden_states, z)
