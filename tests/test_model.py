"""CA-MTL on BERT: stock equivalence, layouts, mixed batches, padding, losses, freezing, loading, the CLI.

The equivalence with the authors' code is tests/test_reference_equivalence.py; other backbone families
are tests/test_families.py.
"""

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

import camtl.model.__main__ as summary_cli
import camtl.model.presets
from camtl.errors import UsageError
from camtl.model import (
    CaMtlConfig,
    CaMtlModel,
    freeze_encoder_layers,
    layer_roles,
    load_model,
    load_tokenizer,
    parameter_report,
)
from camtl.model.conditioning import ATTENTION_IMPLEMENTATION, conditional_sdpa
from camtl.model.heads import HeadInputs, HeadOutputs
from camtl.model.modules import (
    ConditionalAdapter,
    ConditionalAttentionBias,
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
        backbone=tiny_bert(num_layers).to_dict(),
        tasks=TASKS,
        max_seq_length=MAX_SEQ_LENGTH,
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
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": token_type_ids,
        "task_ids": torch.tensor([0, 1, 2, 1, 0, 2])[:size],
        "labels": torch.tensor([1.0, 3.2, 2.0, 0.4, 0.0, 1.0])[:size],
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


def encode(model: CaMtlModel, inputs: dict):
    return model.encode(
        inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"], inputs["task_ids"]
    )


# --- the stock backbone --------------------------------------------------------------------------------


def test_baseline_layout_is_the_stock_bert(bert_dir):
    bert = BertModel.from_pretrained(bert_dir).eval()
    model = load_model(str(bert_dir), TASKS, max_seq_length=MAX_SEQ_LENGTH).eval()
    assert model.config.layout == "none" and isinstance(model.backbone, BertModel)
    assert not any(isinstance(module, ConditionalModule) for module in model.modules())
    inputs = batch()
    expected = bert(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"])
    sequence_output, pooled_output = encode(model, inputs)
    valid = inputs["attention_mask"].bool()
    torch.testing.assert_close(
        sequence_output[valid], expected.last_hidden_state[valid], atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(pooled_output, expected.pooler_output, atol=1e-5, rtol=1e-5)


def test_only_conditional_models_use_camtls_attention_function():
    assert tiny_model("none").backbone.config._attn_implementation == "sdpa"
    assert tiny_model("base").backbone.config._attn_implementation == ATTENTION_IMPLEMENTATION
    ablated = tiny_model("base", conditional_modules=["layer_norm", "adapter"])
    assert ablated.backbone.config._attn_implementation == "sdpa"


def test_attention_function_hands_a_layer_without_bias_to_stock_sdpa_unchanged(monkeypatch):
    seen = {}
    monkeypatch.setattr(
        "camtl.model.conditioning.sdpa_attention_forward",
        lambda module, q, k, v, mask, **kwargs: seen.setdefault("mask", mask),
    )
    plain = torch.nn.Module()
    conditional_sdpa(plain, torch.randn(2, 4, 5, 8), torch.randn(2, 4, 5, 8), torch.randn(2, 4, 5, 8), None)
    assert seen["mask"] is None  # no padding, no bias: SDPA without a mask, the fast kernels


def test_a_batch_without_padding_needs_no_mask():
    model = tiny_model("base")
    inputs = batch(pad_from=(10,) * 6)
    with torch.no_grad():
        with_mask = model(**inputs).logits
        without = model(**{**inputs, "attention_mask": None}).logits
    torch.testing.assert_close(with_mask, without, atol=1e-6, rtol=1e-6)


# --- layouts -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_layers", [4, 6, 12])
def test_base_layout_puts_the_modules_where_the_authors_do(num_layers):
    model = tiny_model("base", num_layers)
    half, top = num_layers // 2, num_layers - 1
    layers = model.backbone.encoder.layer
    for index, layer in enumerate(layers):
        assert isinstance(layer.attention.self.conditional_bias, ConditionalAttentionBias)
        assert isinstance(layer.attention.output.LayerNorm, ConditionalLayerNorm) == (index >= half)
        assert isinstance(layer.output.LayerNorm, ConditionalLayerNorm) == (index >= half)
        assert hasattr(layer.output, "adapter") == (index == top)
    assert isinstance(layers[top].output.adapter, ConditionalAdapter)
    assert model.stream is None
    assert model.backbone.embeddings.conditional_alignment is not None
    report = parameter_report(model)["layers"]
    assert [layer["adapter"] for layer in report] == [index == top for index in range(num_layers)]


@pytest.mark.parametrize("num_layers", [4, 5, 6])
def test_large_layout_conditions_the_top_half_and_streams_every_layer(num_layers):
    model = tiny_model("large", num_layers)
    first_conditional = num_layers - num_layers // 2
    for index, layer in enumerate(model.backbone.encoder.layer):
        assert isinstance(layer.output.LayerNorm, ConditionalLayerNorm) == (index >= first_conditional)
        assert not hasattr(layer.output, "adapter")
    assert len(model.stream.adapters) == num_layers
    assert all(layer["adapter"] for layer in parameter_report(model)["layers"])


def test_layer_roles_of_the_reference_layouts():
    base = layer_roles("base", 12)
    assert [role.conditional_layer_norm for role in base] == [False] * 6 + [True] * 6
    assert [role.adapter for role in base] == [False] * 11 + [True]
    assert base[11].from_scratch and not any(role.from_scratch for role in base[:11])
    large = layer_roles("large", 24)
    assert [role.conditional_layer_norm for role in large] == [False] * 12 + [True] * 12
    assert all(role.conditional_attention and not role.adapter for role in large)
    ablated = layer_roles("base", 12, ("attention",))
    assert not any(role.conditional_layer_norm or role.adapter or role.from_scratch for role in ablated)


def test_large_layout_output_is_the_adapter_stream():
    model = tiny_model("large")
    captured = {}
    model.backbone.encoder.layer[-1].register_forward_hook(
        lambda module, args, out: captured.update(layer=out)
    )
    sequence_output, _ = encode(model, batch())
    assert not torch.allclose(sequence_output, captured["layer"])


def test_ablations_remove_exactly_the_named_modules():
    model = tiny_model("base", conditional_modules=["attention"])
    assert not hasattr(model.backbone.embeddings, "conditional_alignment")
    assert not any(isinstance(m, (ConditionalLayerNorm, ConditionalAdapter)) for m in model.modules())
    assert all(hasattr(layer.attention.self, "conditional_bias") for layer in model.backbone.encoder.layer)
    with pytest.raises(UsageError, match="unknown conditional module"):
        tiny_model("base", conditional_modules=["adaptor"])
    with pytest.raises(UsageError, match="conditional_modules is empty: .* layout 'none'"):
        tiny_model("base", conditional_modules=[])


# --- heads, loss, entropy, mixed batches, padding -----------------------------------------------------


@pytest.mark.parametrize("layout", ["none", "base", "large"])
def test_mixed_task_batch_equals_task_by_task(layout):
    model = tiny_model(layout)
    inputs = batch()
    with torch.no_grad():
        mixed = model(**inputs)
        mixed_losses = mixed.example_losses
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
    long["input_ids"][:, :10] = short["input_ids"]
    long["input_ids"][:, 10:] = 0
    long["token_type_ids"][:, 10:] = 0
    with torch.no_grad():
        torch.testing.assert_close(model(**short).logits, model(**long).logits, atol=1e-5, rtol=1e-5)


def test_logits_and_loss_follow_each_examples_task():
    model = tiny_model("base")
    inputs = batch()
    with torch.no_grad():
        output = model(**inputs)
        _, pooled = encode(model, inputs)
    weight, bias = model.heads.classifier.weight, model.heads.classifier.bias
    columns = {0: [0, 1], 1: [2], 2: [3, 4, 5]}  # cola, sts-b, mnli side by side in one linear layer
    assert output.logits.shape == (6, 3)
    losses = {0: [], 1: [], 2: []}
    for row, task in enumerate(inputs["task_ids"].tolist()):
        head = pooled[row] @ weight[columns[task]].T + bias[columns[task]]
        torch.testing.assert_close(output.logits[row, : len(head)], head)
        assert torch.isneginf(output.logits[row, len(head) :]).all()
        label = inputs["labels"][row]
        loss = (head[0] - label) ** 2 if task == 1 else F.cross_entropy(head[None], label.long()[None])
        losses[task].append(loss)
    task_means = torch.stack([torch.stack(values).mean() for values in losses.values()])
    torch.testing.assert_close(output.loss, task_means.mean())  # the authors' mean of task means


def test_entropy_is_normalised_per_task_and_zero_for_regression():
    model = tiny_model("base")
    task_ids = torch.tensor([0, 2, 1, 0])
    logits = torch.tensor(
        [[0.0, 0.0, -math.inf], [0.0, 0.0, 0.0], [2.5, -math.inf, -math.inf], [20.0, -20.0, -math.inf]]
    )
    entropy = model.heads.entropy(HeadOutputs(logits=logits), HeadInputs(*[None] * 2, task_ids, *[None] * 3))
    torch.testing.assert_close(entropy[0], torch.tensor(math.log(2) / (math.log(2) + 1e-5)))
    torch.testing.assert_close(entropy[1], torch.tensor(math.log(3) / (math.log(3) + 1e-5)))
    assert entropy[2] == 0 and entropy[3] < 1e-3


def test_heads_compute_in_fp32_under_autocast():
    model = tiny_model("base")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(**batch())
    assert output.logits.dtype == torch.float32 and output.loss.dtype == torch.float32


def test_forward_has_no_data_dependent_host_sync():
    # On the meta device any .item(), nonzero or boolean-mask indexing raises: a full forward and
    # backward there proves the hot path never waits on tensor values.
    with torch.device("meta"):
        for layout in ("none", "base", "large"):
            model = CaMtlModel(CaMtlConfig(layout=layout, backbone=tiny_bert().to_dict(), tasks=TASKS))
            inputs = {key: value.to("meta") for key, value in batch().items()}
            model(**inputs).loss.backward()


@pytest.mark.parametrize("layout", ["none", "base", "large"])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_every_parameter_gets_a_gradient(layout, pooling):
    model = tiny_model(layout, pooling=pooling).train()
    model(**batch()).loss.backward()
    assert [name for name, p in model.named_parameters() if p.grad is None] == []


# --- freezing and the parameter report ----------------------------------------------------------------


def test_freezing_keeps_conditional_parameters_and_heads_training():
    model = tiny_model("base").train()
    layers = freeze_encoder_layers(model, "0-2")
    assert [layer["frozen"] for layer in layers] == [True, True, True, False]
    model(**batch()).loss.backward()
    conditional = conditional_parameter_names(model)
    frozen_parts = ("backbone.embeddings.", *(f"backbone.encoder.layer.{i}." for i in range(3)))
    for name, parameter in model.named_parameters():
        should_train = name in conditional or not name.startswith(frozen_parts)
        assert parameter.requires_grad == should_train, name
        assert (parameter.grad is not None) == should_train, name
    # conditional attention inside a frozen layer keeps learning (the authors' code froze it by mistake)
    assert (
        model.backbone.encoder.layer[0].attention.self.conditional_bias.film.projection.weight.grad
        is not None
    )


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
    bert = sum(p.numel() for p in BertModel(tiny_bert()).parameters())
    assert (
        report["backbone"] == bert
    )  # CLN keeps the norms' weight and bias; the fresh top layer replaces one
    assert report["ratio_to_backbone"] == pytest.approx(report["total"] / bert)
    heads = (32 + 1) * (2 + 1 + 3)
    assert report["ratio_to_single_task_models"] == pytest.approx(report["total"] / (3 * bert + heads))
    freeze_encoder_layers(model, "0-1")
    assert parameter_report(model)["trainable"] < report["total"]


# --- loading, save/load, errors -----------------------------------------------------------------------


def test_backbone_weights_load_exactly_and_the_top_layer_starts_from_scratch(bert_dir):
    bert_state = BertModel.from_pretrained(bert_dir).state_dict()
    model = load_model(str(bert_dir), TASKS, layout="base", max_seq_length=MAX_SEQ_LENGTH)
    state = model.backbone.state_dict()
    for key in (
        "embeddings.word_embeddings.weight",
        "encoder.layer.2.output.LayerNorm.weight",
        "pooler.dense.bias",
    ):
        assert torch.equal(state[key], bert_state[key])
    top = "encoder.layer.3.attention.self.query.weight"
    assert not torch.equal(state[top], bert_state[top])
    assert state[top].std() == pytest.approx(0.02, rel=0.2)  # BERT's init, as the authors' fresh layer
    assert torch.count_nonzero(state["encoder.layer.0.attention.self.conditional_bias.weight"]) == 0


def test_large_layout_loads_every_pretrained_layer(bert_dir):
    bert_state = BertModel.from_pretrained(bert_dir).state_dict()
    state = load_model(
        str(bert_dir), TASKS, layout="large", max_seq_length=MAX_SEQ_LENGTH
    ).backbone.state_dict()
    assert all(torch.equal(state[key], value) for key, value in bert_state.items())


@pytest.mark.parametrize("layout", ["none", "base", "large"])
def test_save_and_load_round_trip(tmp_path, layout):
    model = tiny_model(layout, pooling="mean" if layout == "large" else "cls")
    model.save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors"} <= {path.name for path in tmp_path.iterdir()}
    loaded = load_model(str(tmp_path), list(reversed(TASKS)), max_seq_length=MAX_SEQ_LENGTH).eval()
    assert loaded.config.tasks == TASKS and loaded.config.layout == layout
    inputs = batch()
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, loaded(**inputs).logits)
    assert loaded.task_index("STS-B") == 1


def test_checkpoint_options_that_shape_the_weights_are_fixed(tmp_path):
    tiny_model("base").save_pretrained(tmp_path)
    with pytest.raises(UsageError, match="attention_film='shared', not 'per_block'"):
        load_model(str(tmp_path), TASKS, attention_film="per_block")
    assert (
        load_model(str(tmp_path), TASKS, loss_reduction="example_mean").config.loss_reduction
        == "example_mean"
    )


def test_a_camtl_0_1_checkpoint_says_how_to_convert(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "camtl", "layout": "base", "backbone": {}})
    )
    with pytest.raises(UsageError, match="saved by camtl 0.1.*retrain"):
        load_model(str(tmp_path), None)


def test_checkpoint_tokenizer_loads_from_the_checkpoint(tmp_path):
    tokenizer = load_tokenizer("CA-MTL-mini")
    backbone = tiny_bert(4)
    backbone.vocab_size = len(tokenizer)  # its ids must index the embeddings (loading checks it)
    CaMtlModel(CaMtlConfig(layout="base", backbone=backbone.to_dict(), tasks=TASKS)).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
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
    with pytest.raises(UsageError, match="neither a camtl checkpoint nor a model directory"):
        load_model(str(tmp_path), TASKS)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(UsageError, match="'gpt2' is not supported: camtl conditions BERT, RoBERTa"):
        load_model(str(tmp_path), TASKS)


def test_max_seq_length_beyond_the_backbone_positions_is_a_usage_error(bert_dir):
    with pytest.raises(UsageError, match="position embeddings"):
        load_model(str(bert_dir), TASKS, max_seq_length=65)


def test_unreachable_hub_fails_at_once_and_names_the_offline_model(monkeypatch):
    monkeypatch.setattr(camtl.model.presets, "_hub_reachable", lambda: False)
    start = time.monotonic()
    with pytest.raises(UsageError, match="CA-MTL-mini"):
        load_model("camtl-tests/no-such-bert", TASKS)
    assert time.monotonic() - start < 5


def test_auto_pooling_takes_the_bundled_encoders_declared_mean_pooling():
    assert load_model("all-MiniLM-L6-v2", ["rte"], pooling="auto").config.pooling == "mean"
    assert load_model("all-MiniLM-L6-v2", ["rte"]).config.pooling == "cls"  # the authors' default


def test_mean_pooling_averages_the_real_tokens():
    model = tiny_model("none", pooling="mean")
    inputs = batch()
    sequence, pooled = encode(model, inputs)
    row, length = 1, int(inputs["attention_mask"][1].sum())
    torch.testing.assert_close(pooled[row], sequence[row, :length].mean(0))
    assert model.backbone.pooler is None


# --- the bundled encoder and the command line --------------------------------------------------------


def test_bundled_mini_model_runs_forward_and_backward():
    model = load_model("CA-MTL-mini", ["cola", "sts-b"], max_seq_length=32).train()
    tokenizer = load_tokenizer("CA-MTL-mini")
    encoded = tokenizer(["a fine film", "two cats"], ["", "sat on a mat"], padding=True, return_tensors="pt")
    output = model(**encoded, task_ids=torch.tensor([0, 1]), labels=torch.tensor([1.0, 2.5]))
    output.loss.backward()
    assert torch.isfinite(output.loss)
    assert model.task_embedding.embedding.weight.grad is not None
    assert model.backbone.embeddings.word_embeddings.weight.grad is not None


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
    summary_cli.main([*SUMMARY, "--freeze_encoder_layers", "0-2"])
    frozen = json.loads(capsys.readouterr().out)
    for fields in (report, frozen):
        assert fields["total"] == fields["backbone"] + fields["conditional"] + fields["heads"]
        assert len(fields["layers"]) == 6
    assert report["heads"] == 384 * 4 + 4
    assert report["trainable"] == report["total"]
    assert frozen["trainable"] < report["trainable"]
    assert [layer["frozen"] for layer in frozen["layers"]] == [True] * 3 + [False] * 3


def test_summary_cli_takes_max_seq_length(capsys):
    summary_cli.main([*SUMMARY, "--max_seq_length", "64"])
    at_64 = json.loads(capsys.readouterr().out)
    summary_cli.main(SUMMARY)
    at_128 = json.loads(capsys.readouterr().out)
    # M(z) has L x ceil(L / N) entries per layer and N = 384 // L blocks: 64 x 11 against 128 x 43
    assert at_128["conditional"] - at_64["conditional"] == 6 * (
        128 * 43 - 64 * 11 + 2 * 384 * (43 - 11) + 2 * (43 - 11)
    )


def test_summary_cli_usage_error_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        summary_cli.main(["summary", "--model_name_or_path", "/no/such/dir", "--tasks", "cola"])
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and "does not exist" in stderr
