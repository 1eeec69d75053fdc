"""Parameter counts of CA-MTL at the authors' shapes, no download: ``python -m scripts.parameter_counts``.

Builds CA-MTL-base on a bert-base-cased-shaped config and CA-MTL-large on a bert-large-cased-shaped one
(vocabulary 28,996, nine GLUE tasks, max_seq_length 128) on the meta device and prints their reports.
"""

from __future__ import annotations

import torch
from transformers import BertConfig

from camtl.model import CaMtlConfig, CaMtlModel, format_parameter_report, parameter_report

SHAPES = {
    "CA-MTL-base (bert-base-cased shape)": ("base", BertConfig(vocab_size=28996)),
    "CA-MTL-large (bert-large-cased shape)": (
        "large",
        BertConfig(
            vocab_size=28996,
            hidden_size=1024,
            num_hidden_layers=24,
            num_attention_heads=16,
            intermediate_size=4096,
        ),
    ),
}

if __name__ == "__main__":
    for name, (layout, backbone) in SHAPES.items():
        with torch.device("meta"):
            model = CaMtlModel(CaMtlConfig(layout=layout, backbone=backbone.to_dict(), max_seq_length=128))
        print(name)
        print(format_parameter_report(parameter_report(model)))
