"""Each conditional module against a naive, example-by-example restatement of its equation."""

import math

import pytest
import torch
from torch import nn

from camtl.modules import (
    ConditionalAdapter,
    ConditionalAlignment,
    ConditionalAttentionBias,
    ConditionalLayerNorm,
    FiLM,
    TaskEmbedding,
    conditional_parameter_names,
)

COND = 8  # d_cond
TASK_IDS = torch.tensor([0, 2, 1, 2, 0])  # a mixed-task batch


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def randomize(module: nn.Module) -> nn.Module:
    """Non-trivial values everywhere (the identity-like defaults would hide mistakes)."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0, 0.5)
    return module


def task_vectors(batch_size: int = len(TASK_IDS)) -> torch.Tensor:
    table = torch.randn(3, COND)
    return table[TASK_IDS[:batch_size]]


def film_terms(film: FiLM, z_i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """gamma(z_i), beta(z_i) for one example, straight from the projection's weight rows."""
    weight, bias = film.projection.weight, film.projection.bias
    gamma = weight[: film.features] @ z_i + bias[: film.features]
    beta = weight[film.features :] @ z_i + bias[film.features :]
    return gamma, beta


def test_task_embedding_is_a_shared_linear_map_of_a_per_task_vector():
    module = randomize(TaskEmbedding(num_tasks=3, task_embedding_size=5, condition_size=COND))
    z = module(TASK_IDS)
    assert z.shape == (len(TASK_IDS), COND)
    for row, task in enumerate(TASK_IDS):
        expected = module.projection.weight @ module.embedding.weight[task] + module.projection.bias
        torch.testing.assert_close(z[row], expected)
    torch.testing.assert_close(z[0], z[4])  # same task, same z
    assert not torch.allclose(z[0], z[1])


@pytest.mark.parametrize("module_class", [FiLM, ConditionalAlignment])
def test_film_modulates_each_example_with_its_own_task(module_class):
    film = randomize(module_class(COND, 6))
    z = task_vectors()
    x = torch.randn(len(TASK_IDS), 7, 6)  # (B, L, H) like the embedding output
    out = film(x, z)
    for row in range(len(TASK_IDS)):
        gamma, beta = film_terms(film, z[row])
        torch.testing.assert_close(out[row], (1 + gamma) * x[row] + beta)


def test_film_of_a_shared_vector_gives_one_vector_per_example():
    film = randomize(FiLM(COND, 6))
    z, weight = task_vectors(), torch.randn(6)
    out = film(weight, z)
    assert out.shape == (len(TASK_IDS), 6)
    gamma, beta = film_terms(film, z[1])
    torch.testing.assert_close(out[1], (1 + gamma) * weight + beta)


def naive_attention_bias(
    module: ConditionalAttentionBias, z_i: torch.Tensor, seq_length: int
) -> torch.Tensor:
    n, s = module.num_blocks, module.block_size
    gamma, beta = film_terms(module.film, z_i)
    blocks = []
    for block in range(n):
        gamma_n, beta_n = gamma[block * s : (block + 1) * s], beta[block * s : (block + 1) * s]
        rows = [(1 + gamma_n) * module.blocks[block, row] + beta_n for row in range(s)]
        blocks.append(torch.stack(rows))
    full = torch.block_diag(*blocks)
    return full[: module.max_seq_length, : module.max_seq_length][:seq_length, :seq_length]


@pytest.mark.parametrize(
    ("max_seq_length", "num_blocks", "seq_length"), [(12, 3, 12), (10, 3, 7), (16, 6, 5)]
)
def test_attention_bias_is_the_cropped_block_diagonal_of_film_modulated_blocks(
    max_seq_length, num_blocks, seq_length
):
    module = randomize(ConditionalAttentionBias(COND, max_seq_length, num_blocks))
    assert module.block_size == math.ceil(max_seq_length / num_blocks)
    z = task_vectors()
    bias = module(z, seq_length)
    assert bias.shape == (len(TASK_IDS), seq_length, seq_length)
    for row in range(len(TASK_IDS)):
        torch.testing.assert_close(bias[row], naive_attention_bias(module, z[row], seq_length))


def test_attention_bias_is_zero_off_the_diagonal_blocks():
    module = randomize(ConditionalAttentionBias(COND, max_seq_length=8, num_blocks=2))
    bias = module(task_vectors(), 8)
    assert bias[:, :4, 4:].abs().sum() == 0 and bias[:, 4:, :4].abs().sum() == 0
    assert bias[:, :4, :4].abs().sum() > 0


def test_attention_bias_refuses_sequences_longer_than_max_seq_length():
    module = ConditionalAttentionBias(COND, max_seq_length=8, num_blocks=2)
    with pytest.raises(ValueError, match="max_seq_length"):
        module(task_vectors(), 9)


def naive_layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    variance = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(variance + eps) * weight + bias


def test_conditional_layer_norm_scales_by_a_film_modulated_weight():
    module = randomize(ConditionalLayerNorm(6, COND, eps=1e-12))
    z, x = task_vectors(), torch.randn(len(TASK_IDS), 7, 6)
    out = module(x, z)
    for row in range(len(TASK_IDS)):
        gamma, beta = film_terms(module.film, z[row])
        weight = (1 + gamma) * module.weight + beta
        torch.testing.assert_close(out[row], naive_layer_norm(x[row], weight, module.bias, 1e-12))


def test_conditional_layer_norm_keeps_bert_parameter_names():
    names = dict(ConditionalLayerNorm(6, COND, eps=1e-12).named_parameters())
    assert {"weight", "bias"} <= set(names)
    assert names["weight"].shape == names["bias"].shape == (6,)


def test_conditional_adapter_is_a_film_bottleneck_with_residual_and_cln():
    module = randomize(
        ConditionalAdapter(hidden_size=9, adapter_size=3, condition_size=COND, hidden_act="gelu", eps=1e-12)
    )
    z, h = task_vectors(), torch.randn(len(TASK_IDS), 4, 9)
    out = module(h, z)
    for row in range(len(TASK_IDS)):
        gamma, beta = film_terms(module.film, z[row])
        filmed = (1 + gamma) * h[row] + beta
        down = filmed @ module.down.weight.T + module.down.bias
        up = torch.nn.functional.gelu(down) @ module.up.weight.T + module.up.bias
        gamma, beta = film_terms(module.LayerNorm.film, z[row])
        weight = (1 + gamma) * module.LayerNorm.weight + beta
        torch.testing.assert_close(
            out[row], naive_layer_norm(up + h[row], weight, module.LayerNorm.bias, 1e-12)
        )


def test_conditional_parameters_are_those_inside_conditional_modules():
    model = nn.ModuleDict(
        {
            "norm": ConditionalLayerNorm(6, COND, eps=1e-12),
            "adapter": ConditionalAdapter(6, 2, COND, "gelu", 1e-12),
            "plain": nn.Linear(6, 6),
        }
    )
    names = conditional_parameter_names(model)
    # the CLN's own weight and bias are backbone (BERT) weights; its FiLM is conditional
    assert "norm.weight" not in names and "norm.bias" not in names
    assert {"norm.film.projection.weight", "norm.film.projection.bias"} <= names
    # everything inside the adapter is new, its layer norm included
    assert {"adapter.LayerNorm.weight", "adapter.down.weight", "adapter.film.projection.weight"} <= names
    assert not any(name.startswith("plain.") for name in names)
