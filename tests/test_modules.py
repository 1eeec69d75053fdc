"""Each conditional module against a naive, example-by-example restatement of its equation."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from camtl.model.modules import (
    ConditionalAdapter,
    ConditionalAlignment,
    ConditionalAttentionBias,
    ConditionalBottleneck,
    ConditionalLayerNorm,
    ConditionalStream,
    FiLM,
    TaskCondition,
    TaskEmbedding,
    attention_block_count,
    conditional_parameter_names,
)

COND = 8  # d
TASK_IDS = torch.tensor([0, 2, 1, 2, 0])  # a mixed-task batch


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def randomize(module: nn.Module) -> nn.Module:
    """Non-trivial values everywhere (the zero and identity-like defaults would hide mistakes)."""
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


def naive_layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    variance = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(variance + eps) * weight + bias


def test_task_embedding_gives_the_raw_embedding_and_its_shared_transformation():
    module = randomize(TaskEmbedding(num_tasks=3, hidden_size=COND))
    condition = module(TASK_IDS)
    assert condition.embedding.shape == condition.z.shape == (len(TASK_IDS), COND)
    for row, task in enumerate(TASK_IDS):
        e = module.embedding.weight[task]
        torch.testing.assert_close(condition.embedding[row], e)
        torch.testing.assert_close(
            condition.z[row], module.transformation.weight @ e + module.transformation.bias
        )
    torch.testing.assert_close(condition.z[0], condition.z[4])  # same task, same z
    assert not torch.allclose(condition.z[0], condition.z[1])


def test_film_modulates_each_example_with_its_own_task():
    film = randomize(FiLM(COND, 6))
    z = task_vectors()
    x = torch.randn(len(TASK_IDS), 7, 6)  # (B, L, d) like the embedding output
    out = film(x, z)
    for row in range(len(TASK_IDS)):
        gamma, beta = film_terms(film, z[row])
        torch.testing.assert_close(out[row], (1 + gamma) * x[row] + beta)


def test_film_of_a_shared_parameter_gives_one_value_per_example():
    film = randomize(FiLM(COND, 6))
    z, weight = task_vectors(), torch.randn(6)
    out = film(weight, z)
    assert out.shape == (len(TASK_IDS), 6)
    gamma, beta = film_terms(film, z[1])
    torch.testing.assert_close(out[1], (1 + gamma) * weight + beta)


def test_alignment_reads_the_raw_task_embedding_not_z():
    module = randomize(ConditionalAlignment(COND, 6))
    e, z = task_vectors(), task_vectors()
    module.bind(TaskCondition(embedding=e, z=z))
    x = torch.randn(len(TASK_IDS), 4, 6)
    torch.testing.assert_close(module.align(x), module(x, e))


def test_an_unbound_conditioned_module_says_so():
    with pytest.raises(RuntimeError, match="before a task condition was bound"):
        ConditionalLayerNorm(6, COND, eps=1e-12)(torch.randn(2, 3, 6))


def authors_attention_bias(
    module: ConditionalAttentionBias, z_i: torch.Tensor, seq_length: int
) -> torch.Tensor:
    """The authors' CBDA for one example: FiLM the L x w matrix, chunk its rows, block_diag, crop."""
    gamma, beta = film_terms(module.film, z_i)
    w = module.block_size
    if module.per_block_film:
        rows = torch.arange(module.max_seq_length) // w
        filmed = (1 + gamma.view(-1, w)[rows]) * module.weight + beta.view(-1, w)[rows]
    else:
        filmed = (1 + gamma) * module.weight + beta
    full = torch.block_diag(*filmed.chunk(module.num_blocks, 0))
    return full[:, : full.shape[0]][:seq_length, :seq_length]


@pytest.mark.parametrize(
    ("max_seq_length", "num_blocks", "seq_length"),
    [(12, 3, 12), (16, 3, 16), (10, 3, 7), (16, 6, 5), (7, 1, 7)],
)
@pytest.mark.parametrize("per_block_film", [False, True])
def test_attention_bias_is_the_authors_block_diagonal(max_seq_length, num_blocks, seq_length, per_block_film):
    module = randomize(ConditionalAttentionBias(COND, max_seq_length, num_blocks, per_block_film))
    assert module.block_size == math.ceil(max_seq_length / num_blocks)
    assert module.weight.shape == (max_seq_length, module.block_size)
    z = task_vectors()
    bias = module(z, seq_length)
    assert bias.shape == (len(TASK_IDS), seq_length, seq_length)
    for row in range(len(TASK_IDS)):
        torch.testing.assert_close(bias[row], authors_attention_bias(module, z[row], seq_length))


def test_one_film_for_all_blocks_has_a_fraction_of_the_parameters():
    shared = ConditionalAttentionBias(384, 128, 3)
    per_block = ConditionalAttentionBias(384, 128, 3, per_block_film=True)
    assert shared.film.features == 43 and per_block.film.features == 3 * 43


def test_attention_bias_starts_at_zero_and_is_zero_off_the_diagonal_blocks():
    module = ConditionalAttentionBias(COND, max_seq_length=8, num_blocks=2)
    assert torch.count_nonzero(module.weight) == 0
    randomize(module)
    bias = module(task_vectors(), 8)
    assert bias[:, :4, 4:].abs().sum() == 0 and bias[:, 4:, :4].abs().sum() == 0
    assert bias[:, :4, :4].abs().sum() > 0


def test_attention_bias_refuses_sequences_longer_than_max_seq_length():
    module = ConditionalAttentionBias(COND, max_seq_length=8, num_blocks=2)
    with pytest.raises(ValueError, match="max_seq_length"):
        module(task_vectors(), 9)


@pytest.mark.parametrize(
    ("hidden_size", "max_seq_length", "blocks"), [(768, 128, 6), (1024, 128, 8), (384, 128, 3), (384, 64, 6),
                                                  (768, 100, 7), (384, 512, 1), (32, 16, 2)]
)  # fmt: skip
def test_block_count_is_the_authors_rule_and_defined_for_every_length(hidden_size, max_seq_length, blocks):
    assert attention_block_count(hidden_size, max_seq_length) == blocks


def test_conditional_layer_norm_scales_by_a_film_modulated_weight():
    module = randomize(ConditionalLayerNorm(6, COND, eps=1e-12))
    z, x = task_vectors(), torch.randn(len(TASK_IDS), 7, 6)
    out = module(x, z)
    for row in range(len(TASK_IDS)):
        gamma, beta = film_terms(module.film, z[row])
        weight = (1 + gamma) * module.weight + beta
        torch.testing.assert_close(out[row], naive_layer_norm(x[row], weight, module.bias, 1e-12))


def test_conditional_layer_norm_keeps_the_replaced_norms_parameter_names():
    names = dict(ConditionalLayerNorm(6, COND, eps=1e-12).named_parameters())
    assert {"weight", "bias"} <= set(names)
    assert "bias" not in dict(ConditionalLayerNorm(6, COND, eps=1e-5, bias=False).named_parameters())


@pytest.mark.parametrize("activation", [None, "gelu"])
def test_bottleneck_is_a_film_and_two_projections(activation):
    module = randomize(ConditionalBottleneck(hidden_size=COND, bottleneck_size=3, activation=activation))
    z, h = task_vectors(), torch.randn(len(TASK_IDS), 4, COND)
    out = module(h, z)
    for row in range(len(TASK_IDS)):
        z_a = module.condition_transformation.weight @ z[row] + module.condition_transformation.bias
        gamma, beta = film_terms(module.film, z_a)
        down = ((1 + gamma) * h[row] + beta) @ module.down.weight.T + module.down.bias
        down = F.gelu(down) if activation else down
        torch.testing.assert_close(out[row], down @ module.up.weight.T + module.up.bias)


def test_adapter_normalises_the_bottleneck_plus_the_attention_output():
    module = randomize(ConditionalAdapter(hidden_size=COND, bottleneck_size=3, eps=1e-12))
    z = task_vectors()
    module.bind(TaskCondition(embedding=torch.zeros_like(z), z=z))
    layer_output, attention_output = torch.randn(len(TASK_IDS), 4, COND), torch.randn(len(TASK_IDS), 4, COND)
    out = module(layer_output, attention_output)
    expected = module.norm(module.bottleneck(layer_output, z) + attention_output, z)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("residual", [False, True])
def test_stream_adds_each_layer_output_to_the_previous_stream_step(residual):
    module = randomize(ConditionalStream(3, COND, 3, 1e-12, None, residual=residual))
    z = task_vectors()
    layers = tuple(torch.randn(len(TASK_IDS), 4, COND) for _ in range(3))
    stream = torch.zeros_like(layers[0])
    for index, hidden in enumerate(layers):
        x = hidden + stream
        stream = module.adapters[index](x, z)
        if residual:
            stream = module.norms[index](stream + x, z)
    torch.testing.assert_close(module(layers, z), stream)


def test_conditional_parameters_are_those_inside_conditional_modules():
    model = nn.ModuleDict(
        {
            "norm": ConditionalLayerNorm(6, COND, eps=1e-12),
            "adapter": ConditionalAdapter(COND, 2, 1e-12),
            "plain": nn.Linear(6, 6),
        }
    )
    names = conditional_parameter_names(model)
    # the CLN's own weight and bias are backbone weights; its FiLM is conditional
    assert "norm.weight" not in names and "norm.bias" not in names
    assert {"norm.film.projection.weight", "norm.film.projection.bias"} <= names
    # everything inside the adapter is new, its layer norm included
    assert {
        "adapter.norm.weight",
        "adapter.bottleneck.down.weight",
        "adapter.bottleneck.film.projection.weight",
    } <= names
    assert not any(name.startswith("plain.") for name in names)
