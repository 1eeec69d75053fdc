"""CA-MTL on every supported backbone family, each a tiny random model saved with its own tokenizer.

No pretrained weights of these families exist offline; the tests build RoBERTa, ELECTRA, DeBERTa-v2
and ModernBERT configs with ``save_pretrained`` and check that the conditional modules sit where the
family table says, that they change nothing when they are zero, that padding and gradient
checkpointing change nothing, and that run.py trains, saves, reloads, predicts and resumes exactly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoModel,
    BertTokenizer,
    DebertaV2Config,
    DebertaV2Model,
    DebertaV2Tokenizer,
    ElectraConfig,
    ElectraModel,
    ElectraTokenizer,
    ModernBertConfig,
    ModernBertModel,
    RobertaConfig,
    RobertaModel,
    RobertaTokenizer,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode

import run
from camtl.model import freeze_encoder_layers, load_model, load_tokenizer, parameter_report
from camtl.model.families import family_of
from camtl.model.modules import ConditionalAttentionBias, ConditionalLayerNorm

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "glue"
TASKS = ["cola", "sts-b"]
WORDS = ("the", "a", "cat", "dog", "sat", "on", "mat", "film", "fine", "good", "bad", "two", "is", "was",
         "not", "and", "of")  # fmt: skip
LETTERS = "abcdefghijklmnopqrstuvwxyz"
SIZE = {"hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 64}


def _wordpiece_vocab() -> dict[str, int]:
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *LETTERS, *(f"##{c}" for c in LETTERS)]
    return {token: index for index, token in enumerate(tokens)}


def _roberta(path: Path) -> None:
    vocab = {
        t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", "<mask>", *bytes_to_unicode().values()])
    }
    RobertaTokenizer(vocab=vocab, merges=[]).save_pretrained(path)  # byte-level BPE without merges
    config = RobertaConfig(
        vocab_size=len(vocab), pad_token_id=1, type_vocab_size=1, max_position_embeddings=66, **SIZE
    )
    RobertaModel(config).save_pretrained(path)


def _electra(path: Path) -> None:
    vocab = _wordpiece_vocab()
    ElectraTokenizer(vocab=vocab).save_pretrained(path)
    # embedding_size < hidden_size: ELECTRA projects its embeddings, and the alignment must follow
    ElectraModel(
        ElectraConfig(vocab_size=len(vocab), embedding_size=16, max_position_embeddings=64, **SIZE)
    ).save_pretrained(path)


def _deberta(path: Path) -> None:
    specials = [(token, 0.0) for token in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")]
    pieces = specials + [(f"▁{w}", -1.0) for w in WORDS] + [(c, -2.0) for c in f"{LETTERS}▁"]
    DebertaV2Tokenizer(vocab=pieces).save_pretrained(path)  # unigram, as DeBERTa-v3
    config = DebertaV2Config(
        vocab_size=len(pieces), relative_attention=True, pos_att_type=["p2c", "c2p"], position_buckets=8,
        max_relative_positions=-1, type_vocab_size=0, position_biased_input=False, max_position_embeddings=64,
        **SIZE,
    )  # fmt: skip
    DebertaV2Model(config).save_pretrained(path)


def _modernbert(path: Path) -> None:
    vocab = _wordpiece_vocab()
    BertTokenizer(vocab=vocab).save_pretrained(path)
    config = ModernBertConfig(
        vocab_size=len(vocab), pad_token_id=0, cls_token_id=2, sep_token_id=3, bos_token_id=2, eos_token_id=3,
        max_position_embeddings=64, local_attention=8, global_attn_every_n_layers=2, **SIZE,
    )  # fmt: skip
    ModernBertModel(config).save_pretrained(path)


BUILDERS = {"roberta": _roberta, "electra": _electra, "deberta-v2": _deberta, "modernbert": _modernbert}


@pytest.fixture(scope="module", params=list(BUILDERS))
def backbone(request, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp(request.param)
    BUILDERS[request.param](path)
    return path


def encoded(backbone: Path, pad_to: int | None = None) -> dict:
    tokenizer = load_tokenizer(str(backbone))
    batch = tokenizer(
        ["the cat sat", "a good film is not bad", "two dogs"], ["on the mat", "fine", "sat on a mat"],
        padding="max_length" if pad_to else True, max_length=pad_to, return_tensors="pt",
        return_token_type_ids=True,
    )  # fmt: skip
    return {**batch, "task_ids": torch.tensor([0, 1, 0]), "labels": torch.tensor([1.0, 2.5, 0.0])}


def model_of(backbone: Path, layout: str, **options):
    torch.manual_seed(1)
    model = load_model(str(backbone), TASKS, layout=layout, max_seq_length=48, **options)
    with torch.no_grad():  # off the zero start of M(z) and the adapters
        for name, parameter in model.named_parameters():
            if "conditional_bias" in name or "film" in name:
                parameter.normal_(0, 0.1)
    return model.eval()


# --- where the modules go, and that they compute what they should -----------------------------------


@pytest.mark.parametrize("layout", ["base", "large"])
def test_modules_sit_where_the_family_table_says(backbone, layout):
    model = model_of(backbone, layout)
    family = family_of(model.config.backbone["model_type"])
    layers = family.layers_of(model.backbone)
    first_conditional = 2  # 4 layers: base [2, 4), large the last 4 // 2
    for index, layer in enumerate(layers):
        assert isinstance(layer.get_submodule(family.attention).conditional_bias, ConditionalAttentionBias)
        assert isinstance(layer.get_submodule(family.ffn_norm), ConditionalLayerNorm) == (
            index >= first_conditional
        )
    alignment_host = family.embedding_output_of(model.backbone)
    assert hasattr(alignment_host, "conditional_alignment")
    if model.config.backbone["model_type"] == "electra":
        assert alignment_host is model.backbone.embeddings_project  # the FiLM acts on hidden_size vectors
    report = parameter_report(model)
    assert report["total"] == report["backbone"] + report["conditional"] + report["heads"]
    stock = sum(p.numel() for p in AutoModel.from_pretrained(backbone).parameters())
    assert report["backbone"] == stock


def test_a_zero_conditional_attention_is_the_stock_attention(backbone):
    stock = AutoModel.from_pretrained(backbone).eval()
    model = load_model(
        str(backbone), TASKS, layout="base", max_seq_length=48, conditional_modules=["attention"]
    )
    batch = encoded(backbone)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, ConditionalAttentionBias):  # W = 0 and gamma = beta = 0: M(z) = 0
                for parameter in module.parameters():
                    parameter.zero_()
        token_types = {"token_type_ids": batch["token_type_ids"]} if model.family.token_types else {}
        expected = stock(**inputs, **token_types).last_hidden_state
        actual, _ = model.eval().encode(
            **inputs, token_type_ids=batch["token_type_ids"], task_ids=batch["task_ids"]
        )
        valid = batch["attention_mask"].bool()
        torch.testing.assert_close(
            actual[valid], expected[valid], atol=1e-5, rtol=1e-5
        )  # M(z) = 0 at the start
        for module in model.modules():
            if isinstance(module, ConditionalAttentionBias):
                module.weight.normal_()
                module.film.projection.bias.normal_()
        moved, _ = model.encode(**inputs, token_type_ids=batch["token_type_ids"], task_ids=batch["task_ids"])
    assert not torch.allclose(moved[valid], expected[valid], atol=1e-3)  # and the bias reaches the scores


@pytest.mark.parametrize("layout", ["none", "base", "large"])
def test_padding_changes_nothing(backbone, layout):
    model = model_of(backbone, layout)
    short, long = encoded(backbone), encoded(backbone, pad_to=40)
    with torch.no_grad():
        torch.testing.assert_close(model(**short).logits, model(**long).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layout", ["base", "large"])
def test_gradient_checkpointing_gives_the_same_gradients(backbone, layout):
    model = model_of(backbone, layout)
    for parameter in model.parameters():  # dropout off, gradients on
        parameter.requires_grad_(True)
    batch = encoded(backbone)
    model(**batch).loss.backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    model(**batch).loss.backward()
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, expected[name], atol=1e-5, rtol=1e-4, msg=name)


def test_freezing_follows_the_familys_layers(backbone):
    model = model_of(backbone, "base")
    layers = freeze_encoder_layers(model, "0-1")
    assert [layer["frozen"] for layer in layers] == [True, True, False, False]
    family = family_of(model.config.backbone["model_type"])
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    assert any(name.startswith(f"backbone.{family.layers}.0.") for name in frozen)
    assert any(name.startswith("backbone.embeddings.") for name in frozen)
    assert not any("conditional" in name or "film" in name for name in frozen)
    assert parameter_report(model)["trainable"] < parameter_report(model)["total"]


def test_backbones_without_a_pooler_pool_the_first_token(backbone):
    model = model_of(backbone, "base")
    batch = encoded(backbone)
    with torch.no_grad():
        sequence, pooled = model.encode(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                                        batch["task_ids"])  # fmt: skip
    if getattr(model.backbone, "pooler", None) is None:
        torch.testing.assert_close(pooled, sequence[:, 0])
    else:  # RoBERTa keeps BERT's tanh pooler
        torch.testing.assert_close(pooled, model.backbone.pooler(sequence))


# --- run.py end to end -------------------------------------------------------------------------------


def flags(backbone: Path, tmp_path: Path, output: str, layout: str) -> list[str]:
    return [
        "--model_name_or_path", str(backbone), "--layout", layout, "--data_dir", str(FIXTURES),
        "--tasks", *TASKS, "--output_dir", str(tmp_path / output),
        "--features_cache_dir", str(tmp_path / "cache"),
        "--max_seq_length", "32", "--per_device_train_batch_size", "4", "--learning_rate", "1e-3",
        "--max_steps", "4", "--save_steps", "2", "--logging_steps", "2", "--report_to", "none", "--seed", "3",
        "--max_eval_samples", "6", "--use_mt_uncertainty",
    ]  # fmt: skip


@pytest.mark.parametrize("layout", ["base", "large"])
def test_run_trains_saves_reloads_predicts_and_resumes_exactly(backbone, tmp_path, layout):
    run.main([*flags(backbone, tmp_path, "whole", layout), "--do_train", "--do_eval"])
    (tmp_path / "resumed").mkdir()
    shutil.copytree(tmp_path / "whole" / "checkpoint-2", tmp_path / "resumed" / "checkpoint-2")
    run.main(
        [*flags(backbone, tmp_path, "resumed", layout), "--do_train", "--resume_from_checkpoint", "latest"]
    )
    expected, actual = (
        load_file(tmp_path / run_dir / "model.safetensors") for run_dir in ("whole", "resumed")
    )
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[key], actual[key]) for key in expected)

    reloaded = [*flags(backbone, tmp_path, "reloaded", layout), "--do_eval"]
    reloaded[reloaded.index("--model_name_or_path") + 1] = str(tmp_path / "whole")
    run.main(reloaded)
    results = [json.loads((tmp_path / d / "eval_results.json").read_text()) for d in ("whole", "reloaded")]
    assert results[0] == results[1]
