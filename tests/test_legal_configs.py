"""Legal but unusual backbones and flags train, evaluate and reload (issue 23, category 2).

Each backbone is its family's default config (only the size made tiny) with the settings of the case:
DeBERTa with and without relative attention and each ``pos_att_type``, type vocabularies of 0, 1 and 2
given a BERT-style tokenizer's second-segment types, and padding flags that round a batch past
--max_seq_length. Each case trains two steps, evaluates, then evaluates again from the saved model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from test_families import SIZE, _wordpiece_vocab
from transformers import (
    BertConfig,
    BertModel,
    BertTokenizer,
    DebertaV2Config,
    DebertaV2Model,
    ElectraConfig,
    ElectraModel,
    ModernBertConfig,
    ModernBertModel,
    RobertaConfig,
    RobertaModel,
)

import run

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "glue"
MODELS = {
    "bert": (BertConfig, BertModel),
    "roberta": (RobertaConfig, RobertaModel),
    "electra": (ElectraConfig, ElectraModel),
    "deberta-v2": (DebertaV2Config, DebertaV2Model),
    "modernbert": (ModernBertConfig, ModernBertModel),
}


@dataclass(frozen=True)
class Case:
    family: str
    config: dict = field(default_factory=dict)  # on top of the family's defaults
    layout: str = "base"
    flags: tuple[str, ...] = ()


CASES = {
    "DeBERTa defaults (no relative attention)": Case("deberta-v2"),
    "DeBERTa defaults, large layout": Case("deberta-v2", layout="large"),
    "DeBERTa relative attention, no pos_att_type": Case("deberta-v2", {"relative_attention": True}),
    "DeBERTa relative attention, pos_att_type c2p": Case(
        "deberta-v2", {"relative_attention": True, "pos_att_type": ["c2p"]}
    ),
    "DeBERTa relative attention, pos_att_type p2c, large": Case(
        "deberta-v2", {"relative_attention": True, "pos_att_type": ["p2c"]}, layout="large"
    ),
    "DeBERTa-v3 settings (type vocabulary 0)": Case(
        "deberta-v2",
        {
            "relative_attention": True,
            "pos_att_type": ["p2c", "c2p"],
            "type_vocab_size": 0,
            "position_buckets": 8,
            "position_biased_input": False,
        },
    ),  # fmt: skip
    "RoBERTa type vocabulary 1, BERT tokenizer": Case("roberta", {"type_vocab_size": 1, "pad_token_id": 0}),
    "RoBERTa defaults (type vocabulary 2)": Case("roberta", {"pad_token_id": 0}, layout="large"),
    "BERT type vocabulary 1": Case("bert", {"type_vocab_size": 1}),
    "ELECTRA defaults": Case("electra", layout="large"),
    "ModernBERT defaults": Case("modernbert", {"pad_token_id": 0}),
    "--pad_to_multiple_of past --max_seq_length": Case("bert", flags=("--pad_to_multiple_of", "24")),
    "--pad_to_multiple_of past --max_seq_length, large": Case(
        "bert", layout="large", flags=("--pad_to_multiple_of", "7")
    ),
}


def backbone(case: Case, path: Path) -> Path:
    """The family's default config at a tiny size, with a BERT-style (wordpiece) tokenizer."""
    vocab = _wordpiece_vocab()
    BertTokenizer(vocab=vocab).save_pretrained(path)
    config_class, model_class = MODELS[case.family]
    torch.manual_seed(0)
    config = config_class(vocab_size=len(vocab), max_position_embeddings=64, **SIZE, **case.config)
    model_class(config).save_pretrained(path)
    return path


def flags(model: Path, tmp_path: Path, output: str, case: Case) -> list[str]:
    return [
        "--model_name_or_path", str(model), "--layout", case.layout, "--data_dir", str(FIXTURES),
        "--tasks", "rte", "sts-b", "--output_dir", str(tmp_path / output),
        "--features_cache_dir", str(tmp_path / "cache"), "--max_seq_length", "32",
        "--per_device_train_batch_size", "4", "--max_steps", "2", "--report_to", "none",
        "--max_eval_samples", "6", *case.flags,
    ]  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_a_legal_backbone_trains_evaluates_and_reloads(name, tmp_path):
    case = CASES[name]
    model = backbone(case, tmp_path / "backbone")
    run.main([*flags(model, tmp_path, "trained", case), "--do_train", "--do_eval"])
    reloaded = flags(model, tmp_path, "reloaded", case)
    reloaded[reloaded.index("--model_name_or_path") + 1] = str(tmp_path / "trained")
    run.main([*reloaded, "--do_eval"])
    results = [json.loads((tmp_path / d / "eval_results.json").read_text()) for d in ("trained", "reloaded")]
    assert results[0] == results[1]
    assert {"rte", "sts-b"} <= set(results[0])
