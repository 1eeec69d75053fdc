"""The CA-MTL model: HF equivalence, layouts, mixed batches, padding, losses, freezing, loading, the CLI."""

import json
import math
import os
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig, BertModel

import camtl.model
from camtl.errors import UsageError
from camtl.model import (
    CaMtlConfig,
    CaMtlLayer,
    CaMtlModel,
    CaMtlSelfAttention,
    LayerRole,
    freeze_encoder_layers,
    layer_roles,
    load_model,
    load_tokenizer,
    parameter_report,
)
from camtl.modules import (
    ConditionalAdapter,
    ConditionalLayerNorm,
    ConditionalModule,
    conditional_parameter_names,
)

TASKS = ["cola", "sts-b", "mnli"]  # 2 classes, regression, 3 classes
MAX_SEQ_LENGTH = 16


def tiny_bert(num_layers: int = 4, max_position_embeddings: int = 64) -> BertConfig:
    return BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=max_position_embeddings,
    )


def tiny_model(layout: str = "base", num_layers: int = 4, **options) -> CaMtlModel:
    config = CaMtlConfig(
        layout=layout,
        backbone=tiny_bert(num_layers).to_diff_dict(),
        tasks=TASKS,
        max_seq_length=MAX_SEQ_LENGTH,
        attention_bias_blocks=3,
        **options,
    )
    model = CaMtlModel(config)
    with torch.no_grad():  # move every parameter off its initial value so that nothing is trivially equal
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return model.eval()


def batch(seq_length: int = 10, pad_from: tuple[int, ...] = (10, 6, 10, 4, 8, 10)):
    torch.manual_seed(1)
    size = len(pad_from)
    input_ids = torch.randint(1, 100, (size, seq_length))
    attention_mask = (torch.arange(seq_length)[None, :] < torch.tensor(pad_from)[:, None]).long()
    input_ids = input_ids * attention_mask
    token_type_ids = (torch.arange(seq_length)[None, :] >= 3).long().expand(size, -1) * attention_mask
    task_ids = torch.tensor([0, 1, 2, 1, 0, 2])[:size]
    labels = torch.tensor([1.0, 3.2, 2.0, 0.4, 0.0, 1.0])[:size]
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": token_type_ids,
        "task_ids": task_ids,
        "labels": labels,
    }


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    """A tiny random BERT saved like a hub checkpoint (config.json + model.safetensors)."""
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("bert")
    BertModel(tiny_bert()).save_pretrained(path)
    return path


# --- equivalence with HF BERT --------------------------------------------------------------------------


def test_plain_encoder_equals_hf_bert_model():
    torch.manual_seed(2)
    bert = BertModel(tiny_bert()).eval()
    model = CaMtlModel(CaMtlConfig(layout="none", backbone=tiny_bert().to_diff_dict(), tasks=TASKS)).eval()
    missing, unexpected = model.load_state_dict(bert.state_dict(), strict=False)
    assert unexpected == [] and all(name.startswith("heads.") for name in missing)
    inputs = batch()
    expected = bert(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"])
    sequence_output, pooled_output = model.encode(
        inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"], inputs["task_ids"]
    )
    valid = inputs["attention_mask"].bool()
    torch.testing.assert_close(
        sequence_output[valid], expected.last_hidden_state[valid], atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(pooled_output, expected.pooler_output, atol=1e-5, rtol=1e-5)


def test_plain_layer_equals_hf_bert_layer():
    torch.manual_seed(2)
    bert = BertModel(tiny_bert()).eval()
    config = CaMtlConfig(layout="none", backbone=tiny_bert().to_diff_dict(), tasks=TASKS)
    layer = CaMtlLayer(config.backbone_config, LayerRole(), config).eval()
    layer.load_state_dict(bert.encoder.layer[1].state_dict())
    hidden_states = torch.randn(3, 7, 32)
    attention_mask = torch.ones(3, 7, dtype=torch.long)
    attention_mask[1, 4:] = 0
    additive_mask = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    expected = bert.encoder.layer[1](hidden_states, additive_mask)
    actual = layer(hidden_states, (attention_mask == 0)[:, None, None, :], None)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


def test_conditional_attention_equals_an_example_by_example_restatement():
    config = CaMtlConfig(
        layout="base",
        backbone=tiny_bert().to_diff_dict(),
        tasks=TASKS,
        max_seq_length=10,
        attention_bias_blocks=3,
    )
    attention = CaMtlSelfAttention(
        config.backbone_config, LayerRole(conditional_attention=True), config
    ).eval()
    bias = attention.attention_bias
    with torch.no_grad():
        bias.blocks.normal_()
        bias.film.projection.weight.normal_(0, 0.3)
    hidden_states, z = torch.randn(3, 8, 32), torch.randn(3, 32)
    attention_mask = torch.ones(3, 8, dtype=torch.long)
    attention_mask[2, 5:] = 0
    actual = attention(hidden_states, (attention_mask == 0)[:, None, None, :], z)

    s = bias.block_size  # ceil(10 / 3) = 4: blocks padded to 12, cropped to 10, then to the batch's 8
    for row in range(3):
        gamma, beta = bias.film.projection(z[row]).chunk(2)
        blocks = [
            (1 + gamma[n * s : (n + 1) * s]) * bias.blocks[n] + beta[n * s : (n + 1) * s] for n in range(3)
        ]
        block_bias = torch.block_diag(*blocks)[:8, :8]
        heads = []
        for head in range(4):
            columns = slice(head * 8, (head + 1) * 8)
            q = hidden_states[row] @ attention.query.weight[columns].T + attention.query.bias[columns]
            k = hidden_states[row] @ attention.key.weight[columns].T + attention.key.bias[columns]
            v = hidden_states[row] @ attention.value.weight[columns].T + attention.value.bias[columns]
            scores = q @ k.T / math.sqrt(8) + block_bias
            scores = scores.masked_fill(attention_mask[row][None, :] == 0, -1e30)
            weights = scores.exp() / scores.exp().sum(-1, keepdim=True)
            heads.append(weights @ v)
        torch.testing.assert_close(actual[row], torch.cat(heads, dim=-1), atol=1e-5, rtol=1e-5)


def test_layout_none_has_no_conditional_module():
    model = tiny_model("none")
    assert not any(isinstance(module, ConditionalModule) for module in model.modules())
    assert conditional_parameter_names(model) == set()


# --- layouts -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_layers", [6, 12, 24])
def test_base_layout_roles(num_layers):
    model = tiny_model("base", num_layers)
    half, top = num_layers // 2, num_layers - 1
    report = parameter_report(model)["layers"]
    assert [layer["conditional"] for layer in report] == [index >= half for index in range(num_layers)]
    assert [layer["adapter"] for layer in report] == [index == top for index in range(num_layers)]
    for index, layer in enumerate(model.encoder.layer):
        assert layer.attention.self.attention_bias is not None  # conditional attention everywhere
        conditional = isinstance(layer.attention.output.LayerNorm, ConditionalLayerNorm)
        assert conditional == (index >= half)
    assert isinstance(model.encoder.layer[top].output.adapter, ConditionalAdapter)
    assert isinstance(model.encoder.layer[top - 1].output.LayerNorm, ConditionalLayerNorm)
    assert model.encoder.stream_adapter is None
    assert model.conditional_alignment is not None


@pytest.mark.parametrize("num_layers", [6, 12, 24])
def test_large_layout_roles(num_layers):
    model = tiny_model("large", num_layers)
    report = parameter_report(model)["layers"]
    assert [layer["conditional"] for layer in report] == [
        index >= num_layers // 2 for index in range(num_layers)
    ]
    assert all(layer["adapter"] for layer in report)
    assert len(model.encoder.stream_adapter) == num_layers
    assert all(layer.output.adapter is None for layer in model.encoder.layer)


def test_reference_layouts_match_the_paper():
    base = layer_roles("base", 12)
    assert [role.conditional_layer_norm for role in base] == [False] * 6 + [True] * 6
    assert [role.adapter for role in base] == [False] * 11 + [True]
    assert base[11].from_scratch and not any(role.from_scratch for role in base[:11])
    assert not layer_roles("base", 12, reinit_top_layer=False)[11].from_scratch
    large = layer_roles("large", 24)
    assert [role.conditional_layer_norm for role in large] == [False] * 12 + [True] * 12
    assert all(role.stream_adapter and role.conditional_attention for role in large)


def test_large_layout_output_is_the_adapter_stream():
    model = tiny_model("large")
    captured = {}
    model.encoder.layer[-1].register_forward_hook(lambda module, args, output: captured.update(layer=output))
    inputs = batch()
    sequence_output, _ = model.encode(
        inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"], inputs["task_ids"]
    )
    assert not torch.allclose(sequence_output, captured["layer"])


# --- heads, loss, entropy, mixed batches, padding -----------------------------------------------------


@pytest.mark.parametrize("layout", ["none", "base", "large"])
def test_mixed_task_batch_equals_task_by_task(layout):
    model = tiny_model(layout)
    inputs = batch()
    with torch.no_grad():
        mixed = model(**inputs)
        mixed_losses = model.heads.loss(mixed.logits, inputs["labels"], inputs["task_ids"])
        for task in range(len(TASKS)):
            rows = (inputs["task_ids"] == task).nonzero().squeeze(1)
            alone = model(**{key: value[rows] for key, value in inputs.items()})
            torch.testing.assert_close(mixed.logits[rows], alone.logits, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(mixed.entropy[rows], alone.entropy, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(mixed_losses[rows].mean(), alone.loss, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layout", ["none", "base", "large"])
def test_extra_padding_does_not_change_logits(layout):
    model = tiny_model(layout)
    short, long = batch(seq_length=10), batch(seq_length=MAX_SEQ_LENGTH)
    with torch.no_grad():
        # the same tokens: the long batch only adds padded positions
        long["input_ids"][:, :10] = short["input_ids"]
        long["input_ids"][:, 10:] = 0
        long["token_type_ids"][:, 10:] = 0
        torch.testing.assert_close(model(**short).logits, model(**long).logits, atol=1e-5, rtol=1e-5)


def test_logits_and_loss_follow_each_examples_task():
    model = tiny_model("base")
    inputs = batch()
    with torch.no_grad():
        output = model(**inputs)
        _, pooled = model.encode(
            inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"], inputs["task_ids"]
        )
    weight, bias = model.heads.classifier.weight, model.heads.classifier.bias
    columns = {0: [0, 1], 1: [2], 2: [3, 4, 5]}  # cola, sts-b, mnli side by side in one linear layer
    assert output.logits.shape == (6, 3)
    losses = []
    for row, task in enumerate(inputs["task_ids"].tolist()):
        head = pooled[row] @ weight[columns[task]].T + bias[columns[task]]
        torch.testing.assert_close(output.logits[row, : len(head)], head)
        assert torch.isneginf(output.logits[row, len(head) :]).all()
        label = inputs["labels"][row]
        if task == 1:
            losses.append((head[0] - label) ** 2)
        else:
            losses.append(F.cross_entropy(head[None], label.long()[None]))
    torch.testing.assert_close(output.loss, torch.stack(losses).mean())


def test_entropy_is_normalised_per_task():
    model = tiny_model("base")
    task_ids = torch.tensor([0, 2, 1, 1, 1, 0])
    logits = torch.tensor(
        [
            [0.0, 0.0, -math.inf],  # cola, uniform: most uncertain
            [0.0, 0.0, 0.0],  # mnli, uniform
            [2.5, -math.inf, -math.inf],  # sts-b mid-range: most uncertain
            [5.0, -math.inf, -math.inf],  # sts-b at the top of its range: certain
            [-3.0, -math.inf, -math.inf],  # below the range: certain
            [20.0, -20.0, -math.inf],  # cola, confident
        ]
    )
    entropy = model.heads.entropy(logits, task_ids)
    torch.testing.assert_close(entropy[:3], torch.ones(3))
    assert (entropy[3:] < 1e-3).all() and (entropy >= 0).all()
    p = torch.tensor(1.0 / 5.0)  # 1.0 on the 0..5 scale
    model_entropy = model.heads.entropy(torch.tensor([[1.0, -math.inf, -math.inf]]), torch.tensor([1]))
    torch.testing.assert_close(model_entropy[0], -(p * p.log() + (1 - p) * (1 - p).log()) / math.log(2))


def test_forward_has_no_data_dependent_host_sync():
    # On the meta device any .item(), nonzero or boolean-mask indexing raises: a full forward and
    # backward there proves the hot path never waits on tensor values.
    with torch.device("meta"):
        for layout in ("base", "large"):
            model = CaMtlModel(
                CaMtlConfig(
                    layout=layout, backbone=tiny_bert().to_diff_dict(), tasks=TASKS, attention_bias_blocks=3
                )
            )
            inputs = {key: value.to("meta") for key, value in batch().items()}
            model(**inputs).loss.backward()


# --- freezing and the parameter report ----------------------------------------------------------------


def test_freezing_keeps_conditional_parameters_and_heads_training():
    model = tiny_model("base").train()
    layers = freeze_encoder_layers(model, "0-2")
    assert [layer["frozen"] for layer in layers] == [True, True, True, False]
    model(**batch()).loss.backward()
    conditional = conditional_parameter_names(model)
    for name, parameter in model.named_parameters():
        in_frozen_part = name.startswith(
            ("embeddings.", "encoder.layer.0.", "encoder.layer.1.", "encoder.layer.2.")
        )
        should_train = name in conditional or not in_frozen_part
        assert parameter.requires_grad == should_train, name
        if should_train:
            assert parameter.grad is not None, name
        else:
            assert parameter.grad is None, name
    # conditional attention inside a frozen layer keeps learning (the reference code froze it by mistake)
    assert model.encoder.layer[0].attention.self.attention_bias.film.projection.weight.grad is not None
    assert model.heads.classifier.weight.grad is not None


@pytest.mark.parametrize("spec", ["3-1", "0-4", "a-b", "-1", "1-2-3", ""])
def test_bad_layer_ranges_are_usage_errors(spec):
    with pytest.raises(UsageError):
        freeze_encoder_layers(tiny_model("base"), spec)


def test_single_layer_spec_freezes_one_layer():
    layers = freeze_encoder_layers(tiny_model("base"), "2")
    assert [layer["frozen"] for layer in layers] == [False, False, True, False]


def test_parameter_report_adds_up():
    model = tiny_model("base")
    report = parameter_report(model)
    assert report["total"] == sum(p.numel() for p in model.parameters())
    assert report["total"] == report["backbone"] + report["conditional"] + report["heads"]
    assert report["heads"] == 32 * 6 + 6
    assert report["trainable"] == report["total"]
    bert = sum(p.numel() for p in BertModel(tiny_bert()).parameters())
    assert report["ratio_to_backbone"] == pytest.approx(report["total"] / bert)
    heads = (32 + 1) * (2 + 1 + 3)
    assert report["ratio_to_single_task_models"] == pytest.approx(report["total"] / (3 * bert + heads))
    freeze_encoder_layers(model, "0-1")
    assert parameter_report(model)["trainable"] < report["total"]


# --- loading, save/load, identity init, errors -------------------------------------------------------


def test_backbone_weights_load_exactly_and_the_top_layer_starts_from_scratch(bert_dir):
    bert = BertModel.from_pretrained(bert_dir)
    model = load_model(str(bert_dir), TASKS, layout="base", max_seq_length=MAX_SEQ_LENGTH)
    assert model.config.layout == "base"
    state, bert_state = model.state_dict(), bert.state_dict()
    for key in (
        "embeddings.word_embeddings.weight",
        "encoder.layer.0.attention.self.query.weight",
        "pooler.dense.bias",
    ):
        assert torch.equal(state[key], bert_state[key])
    top = "encoder.layer.3.attention.self.query.weight"
    assert not torch.equal(state[top], bert_state[top])

    kept = load_model(
        str(bert_dir), TASKS, layout="base", max_seq_length=MAX_SEQ_LENGTH, reinit_top_layer=False
    )
    assert torch.equal(kept.state_dict()[top], bert_state[top])
    assert torch.equal(
        kept.encoder.layer[3].output.adapter.LayerNorm.weight,
        bert_state["encoder.layer.3.output.LayerNorm.weight"],
    )


def test_other_backbones_default_to_the_baseline_layout(bert_dir):
    assert load_model(str(bert_dir), TASKS, max_seq_length=MAX_SEQ_LENGTH).config.layout == "none"


def test_identity_init_starts_as_the_pretrained_backbone(bert_dir):
    bert = BertModel.from_pretrained(bert_dir).eval()
    model = load_model(
        str(bert_dir),
        TASKS,
        layout="base",
        max_seq_length=MAX_SEQ_LENGTH,
        conditional_init="identity",
        reinit_top_layer=False,
    ).eval()
    inputs = batch()
    expected = bert(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"]).pooler_output
    _, pooled = model.encode(
        inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"], inputs["task_ids"]
    )
    torch.testing.assert_close(pooled, expected, atol=1e-5, rtol=1e-5)


def test_reference_init_moves_away_from_the_backbone(bert_dir):
    bert = BertModel.from_pretrained(bert_dir).eval()
    model = load_model(
        str(bert_dir), TASKS, layout="base", max_seq_length=MAX_SEQ_LENGTH, reinit_top_layer=False
    ).eval()
    inputs = batch()
    expected = bert(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"]).pooler_output
    _, pooled = model.encode(
        inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"], inputs["task_ids"]
    )
    assert not torch.allclose(pooled, expected, atol=1e-4)


@pytest.mark.parametrize("layout", ["none", "base", "large"])
def test_save_and_load_round_trip(tmp_path, layout):
    model = tiny_model(layout)
    model.save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors"} <= {path.name for path in tmp_path.iterdir()}
    loaded = load_model(str(tmp_path), list(reversed(TASKS)), max_seq_length=MAX_SEQ_LENGTH).eval()
    assert loaded.config.tasks == TASKS and loaded.config.layout == layout
    inputs = batch()
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, loaded(**inputs).logits)
    assert loaded.task_index("STS-B") == 1


def test_checkpoint_tokenizer_loads_from_the_checkpoint(tmp_path):
    tiny_model("base").save_pretrained(tmp_path)
    load_tokenizer("CA-MTL-mini").save_pretrained(tmp_path)
    tokenizer = load_tokenizer(str(tmp_path))
    assert tokenizer.is_fast
    assert tokenizer("hello world")["input_ids"][0] == tokenizer.cls_token_id


def test_checkpoint_with_other_tasks_names_both_lists(tmp_path):
    tiny_model("base").save_pretrained(tmp_path)
    with pytest.raises(UsageError, match=r"cola sts-b mnli.*not rte"):
        load_model(str(tmp_path), ["rte"], max_seq_length=MAX_SEQ_LENGTH)


def test_truncated_checkpoint_is_reported_as_damaged(tmp_path):
    tiny_model("base").save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(UsageError, match="damaged"):
        load_model(str(tmp_path), TASKS, max_seq_length=MAX_SEQ_LENGTH)


def test_checkpoint_weights_that_do_not_match_the_config_are_refused(tmp_path):
    tiny_model("base").save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["layout"] = "large"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(UsageError, match="does not match"):
        load_model(str(tmp_path), TASKS, max_seq_length=MAX_SEQ_LENGTH)


def test_missing_path_and_non_model_directories_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_model(str(tmp_path / "nowhere"), TASKS)
    with pytest.raises(UsageError, match="neither a camtl checkpoint nor a BERT"):
        load_model(str(tmp_path), TASKS)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(UsageError, match="gpt2"):
        load_model(str(tmp_path), TASKS)


def test_max_seq_length_beyond_the_backbone_positions_is_a_usage_error(bert_dir):
    with pytest.raises(UsageError, match="max_position_embeddings"):
        load_model(str(bert_dir), TASKS, max_seq_length=65)


def test_unreachable_hub_fails_at_once_and_names_the_offline_model(monkeypatch):
    monkeypatch.setattr(camtl.model, "_hub_reachable", lambda: False)
    start = time.monotonic()
    with pytest.raises(UsageError, match="CA-MTL-mini"):
        load_model("camtl-tests/no-such-bert", TASKS)
    assert time.monotonic() - start < 5


# --- the bundled encoder and the command line --------------------------------------------------------


def test_bundled_mini_model_runs_forward_and_backward():
    model = load_model("CA-MTL-mini", ["cola", "sts-b"], max_seq_length=32).train()
    tokenizer = load_tokenizer("CA-MTL-mini")
    encoded = tokenizer(["a fine film", "two cats"], ["", "sat on a mat"], padding=True, return_tensors="pt")
    output = model(**encoded, task_ids=torch.tensor([0, 1]), labels=torch.tensor([1.0, 2.5]))
    output.loss.backward()
    assert torch.isfinite(output.loss)
    assert model.task_embedding.embedding.weight.grad is not None
    assert model.embeddings.word_embeddings.weight.grad is not None


SUMMARY = ["summary", "--model_name_or_path", "CA-MTL-mini", "--tasks", "cola", "mrpc", "--json"]


def test_summary_cli_offline_gives_consistent_numbers(capsys):
    result = subprocess.run(
        [sys.executable, "-m", "camtl.model", *SUMMARY],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        check=True,
    )
    report = json.loads(result.stdout)
    camtl.model.main([*SUMMARY, "--freeze_encoder_layers", "0-2"])
    frozen = json.loads(capsys.readouterr().out)
    for fields in (report, frozen):
        assert fields["total"] == fields["backbone"] + fields["conditional"] + fields["heads"]
        assert fields["trainable"] <= fields["total"]
        assert len(fields["layers"]) == 6
    assert report["heads"] == 384 * 4 + 4
    assert report["trainable"] == report["total"]
    assert frozen["trainable"] < report["trainable"]
    assert [layer["frozen"] for layer in frozen["layers"]] == [True] * 3 + [False] * 3


def test_summary_cli_usage_error_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        camtl.model.main(["summary", "--model_name_or_path", "/no/such/dir", "--tasks", "cola"])
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and "does not exist" in stderr
