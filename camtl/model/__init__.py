"""The CA-MTL model on stock Hugging Face backbones.

modules.py        the conditional modules: one class per equation of the paper, shapes in the docstrings
configuration.py  CaMtlConfig and the layouts' layer roles
families.py       the supported backbone families: where their modules live
conditioning.py   puts the conditional modules (modules.py) into a stock backbone
heads.py          pooling, task heads, losses, entropies
modeling.py       CaMtlModel: the forward pass
presets.py        the named models (CA-MTL-base/-large/-mini) and hub access
saved_config.py   a model directory's config.json, read and checked before any weights
loading.py        load_model / load_tokenizer from a name, a backbone or a checkpoint
freezing.py       --freeze_encoder_layers and the per-layer map
report.py         the parameter report (``python -m camtl.model summary``)
__main__.py       ``python -m camtl.model summary``

Imports: camtl.errors and camtl.tasks only; never camtl.data, camtl.training, camtl.bench or camtl.api
(tests/test_layout.py).
"""

from camtl.model.configuration import CaMtlConfig, LayerRole, layer_roles
from camtl.model.freezing import format_layer_map, freeze_encoder_layers, parse_layer_range
from camtl.model.loading import encoder_layer_count, load_model, load_tokenizer
from camtl.model.modeling import CaMtlModel, CaMtlOutput
from camtl.model.report import format_parameter_report, parameter_report
from camtl.model.saved_config import read_saved_config

__all__ = [
    "CaMtlConfig",
    "CaMtlModel",
    "CaMtlOutput",
    "LayerRole",
    "encoder_layer_count",
    "format_layer_map",
    "format_parameter_report",
    "freeze_encoder_layers",
    "layer_roles",
    "load_model",
    "load_tokenizer",
    "parameter_report",
    "parse_layer_range",
    "read_saved_config",
]
