"""Building a CaMtlModel from a model name, a stock backbone (hub name or directory) or a camtl checkpoint."""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedTokenizerBase,
)
from transformers import logging as hf_logging
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME

from camtl.errors import UsageError
from camtl.model.configuration import CHECKPOINT_FORMAT, CaMtlConfig, check_options_apply
from camtl.model.families import family_of
from camtl.model.modeling import CaMtlModel
from camtl.model.modules import conditional_parameter_names
from camtl.model.presets import check_hub_id, declared_pooling, from_hub, resolve
from camtl.model.saved_config import read_model_config
from camtl.tasks import resolve_tasks

logger = logging.getLogger(__name__)

# Options that shape the weights: a checkpoint's value is fixed. The others may differ at load time.
ARCHITECTURE_OPTIONS = (
    "conditional_modules", "attention_blocks", "attention_film", "adapter_activation", "stream_residual",
    "pooling",
)  # fmt: skip


def usable_positions(config: PretrainedConfig) -> int:
    """The longest sequence the backbone's position embeddings allow (RoBERTa reserves pad_token_id + 1)."""
    positions = getattr(config, "max_position_embeddings", None) or 10**9
    if config.model_type in ("roberta", "xlm-roberta"):
        positions -= (config.pad_token_id or 0) + 1
    return positions


@contextmanager
def without_progress_bar() -> Iterator[None]:
    """transformers' own progress bars ("Loading weights", "Writing model shards") off inside the block,
    as they were after it: a bar for one file says nothing, and one in the middle of training tangles
    with the training bar."""
    progress_bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if progress_bar:
            hf_logging.enable_progress_bar()


def _pretrained(auto_class, location: str, **kwargs):
    """``auto_class.from_pretrained`` in fp32 with its loading info, without the load report and progress
    bar: pretraining checkpoints list their other heads as unexpected, and only missing keys matter."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with without_progress_bar():
            return auto_class.from_pretrained(
                location, dtype=torch.float32, output_loading_info=True, **kwargs
            )
    finally:
        hf_logging.set_verbosity(verbosity)


def _check_positions(config: PretrainedConfig, max_seq_length: int) -> None:
    positions = usable_positions(config)
    if max_seq_length > positions:
        raise UsageError(
            f"max_seq_length {max_seq_length} exceeds the backbone's position embeddings ({positions}):"
            f" use --max_seq_length {positions} or less"
        )


def _load_backbone(location: str, local: bool, max_seq_length: int) -> torch.nn.Module:
    """The stock AutoModel of a backbone with its pretrained weights; its family and positions are checked
    on its config, before any weight is read."""

    def load(**kwargs):
        return _pretrained(AutoModel, location, **kwargs)

    if local:
        directory = Path(location)
        family_of(read_model_config(directory).get("model_type"))
        for weights in _weight_files(directory):
            _check_readable(weights, "the weights are damaged: download or save the model again")
        try:
            _check_positions(AutoConfig.from_pretrained(location), max_seq_length)
            backbone, info = load(ignore_mismatched_sizes=True)  # reported below, with the fix
        except (OSError, ValueError) as error:
            reason = str(error).splitlines()[0]
            raise UsageError(
                f"cannot load the backbone weights in '{location}' ({reason}): check the directory"
            ) from None
        if info["mismatched_keys"]:
            key, saved_shape, config_shape = sorted(info["mismatched_keys"])[0]
            raise UsageError(
                f"the weights in '{location}' do not fit its config.json ({len(info['mismatched_keys'])}"
                f" tensors, e.g. {key}: {list(saved_shape)} saved, {list(config_shape)} by the config):"
                " restore the config.json saved with these weights"
            )
    else:
        config = from_hub(lambda **kwargs: AutoConfig.from_pretrained(location, **kwargs), location)
        family_of(config.model_type)
        _check_positions(config, max_seq_length)
        backbone, info = from_hub(load, location)
    if info["missing_keys"]:
        logger.warning(
            "not in %s, randomly initialised: %s", location, ", ".join(sorted(info["missing_keys"]))
        )
    return backbone


def _load_pretrained_weights(model: CaMtlModel, pretrained: torch.nn.Module) -> None:
    """Copy the pretrained backbone into ``model.backbone``, except a layer trained from scratch."""
    roles = model.config.layer_roles()
    fresh = tuple(f"{model.family.layers}.{i}." for i, role in enumerate(roles) if role.from_scratch)
    expected = model.backbone.state_dict()
    state = {k: v for k, v in pretrained.state_dict().items() if not k.startswith(fresh) and k in expected}
    missing, _ = model.backbone.load_state_dict(state, strict=False)
    conditional = conditional_parameter_names(model.backbone)
    unexplained = sorted(k for k in missing if not k.startswith(fresh) and k not in conditional)
    if unexplained:
        logger.warning("backbone tensors not in the pretrained weights: %s", ", ".join(unexplained))


# The MLM head's tensors in the masked-LM models of BERT-like and RoBERTa-like checkpoints.
_MLM_HEADS = {
    "cls.predictions.transform.dense.": "dense.",
    "cls.predictions.transform.LayerNorm.": "LayerNorm.",
    "cls.predictions.bias": "bias",
    "lm_head.dense.": "dense.",
    "lm_head.layer_norm.": "LayerNorm.",
    "lm_head.bias": "bias",
}


def _load_pretrained_mlm_head(model: CaMtlModel, location: str, local: bool) -> None:
    """The checkpoint's own MLM head when it has one (BERT's ``cls.predictions``, RoBERTa's ``lm_head``);
    otherwise the fresh head stays, tied to the input embeddings like any of them."""

    def load(**kwargs):
        return _pretrained(AutoModelForMaskedLM, location, **kwargs)

    try:
        mlm_model, info = load() if local else from_hub(load, location)
    except (OSError, ValueError):
        mlm_model, info = None, {}
    missing = set(info.get("missing_keys", ()))
    state = {}
    for key, value in mlm_model.state_dict().items() if mlm_model is not None else ():
        for prefix, target in _MLM_HEADS.items():
            if key.startswith(prefix) and key not in missing:
                state[target + key.removeprefix(prefix)] = value
    if len(state) == 5:  # dense weight and bias, norm weight and bias, the output bias
        model.heads.mlm.load_state_dict(state)
        logger.info("masked LM: the checkpoint's MLM head")
    else:
        logger.info("masked LM: %s has no MLM head, a fresh one tied to the input embeddings", location)


def _check_checkpoint(path: Path, config: CaMtlConfig, tasks, layout, max_seq_length, options) -> None:
    if tasks is not None and set(tasks) != set(config.tasks):
        raise UsageError(
            f"the checkpoint '{path}' was trained on tasks {' '.join(config.tasks)}, not {' '.join(tasks)}:"
            " pass the checkpoint's tasks (to evaluate, a subset of them) or start from a backbone"
        )
    if layout is not None and layout != config.layout:
        raise UsageError(
            f"the checkpoint '{path}' has layout '{config.layout}', not '{layout}': drop --layout"
        )
    if max_seq_length is not None and max_seq_length > config.max_seq_length:
        raise UsageError(
            f"max_seq_length {max_seq_length} exceeds the checkpoint's {config.max_seq_length}:"
            f" use --max_seq_length {config.max_seq_length} or less"
        )
    for key, value in options.items():
        if key in ARCHITECTURE_OPTIONS and getattr(config, key) != value:
            raise UsageError(
                f"the checkpoint '{path}' has {key}={getattr(config, key)!r}, not {value!r}:"
                f" its architecture is fixed, drop --{key}"
            )


def _check_model_type(path: Path, saved: dict) -> None:
    """What a directory's config.json alone rules out: a camtl checkpoint of the old format, a backbone of
    a family camtl cannot condition. Checked before the tokenizer or any weight is read."""
    if saved.get("model_type") != "camtl":
        family_of(saved.get("model_type"))
    elif saved.get("checkpoint_format") != CHECKPOINT_FORMAT:
        raise UsageError(
            f"'{path}' was saved by camtl 0.1 (its hand-written encoder and conditional layout), which this"
            " version cannot load: retrain from the backbone, or load it with camtl 0.1 (commit d72e0ee)"
        )


def _weight_files(directory: Path) -> list[Path]:
    """The files transformers reads a local backbone's weights from: model.safetensors, else the shards its
    index names, else the same for pytorch_model.bin (a stray file such as model-old.safetensors is none)."""
    for single, index in ((SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME), (WEIGHTS_NAME, WEIGHTS_INDEX_NAME)):
        if (directory / single).is_file():
            return [directory / single]
        if (directory / index).is_file():
            try:
                shards = json.loads((directory / index).read_text(encoding="utf-8"))["weight_map"].values()
                return [directory / shard for shard in sorted(set(shards))]
            except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
                raise UsageError(
                    f"'{directory / index}' is not a weights index (a JSON object with a weight_map):"
                    " download or save the model again"
                ) from None
    return []


def _check_readable(weights: Path, fix: str) -> None:
    """A weights file is whole (one cut short by a full disk or an interrupted copy fails here, in one
    line, instead of deep in from_pretrained); no tensor is read. A safetensors file's header must cover
    it; a .bin must be torch.save's zip with its directory at the end, or an old pickle."""
    try:
        if weights.suffix == ".safetensors":
            with safe_open(weights, framework="pt") as reader:
                reader.keys()
        elif not zipfile.is_zipfile(weights):
            with weights.open("rb") as file:
                if file.read(1) != b"\x80":  # the pickle protocol byte of torch.save before torch 1.6
                    raise ValueError("not a zip archive: empty or cut short")
    except Exception as error:  # safetensors raises its own error type for a truncated or corrupt file
        raise UsageError(f"'{weights}' cannot be read ({error}): {fix}") from None


def _load_checkpoint(path: Path, saved: dict, tasks, layout, max_seq_length, options) -> CaMtlModel:
    _check_model_type(path, saved)
    config = CaMtlConfig.from_pretrained(path)
    _check_checkpoint(path, config, tasks, layout, max_seq_length, options)
    for key, value in options.items():  # the non-architectural ones, e.g. loss_reduction
        setattr(config, key, value)
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise UsageError(f"the checkpoint '{path}' has no model.safetensors: the checkpoint is incomplete")
    _check_readable(weights, "the checkpoint is damaged, use another one")
    # Mismatched shapes are reported like the missing keys, below, rather than raised by transformers.
    model, info = _pretrained(CaMtlModel, str(path), config=config, ignore_mismatched_sizes=True)
    problems = info["missing_keys"] or info["unexpected_keys"] or [key for key, *_ in info["mismatched_keys"]]
    if problems:
        raise UsageError(
            f"'{weights}' does not match its config.json ({', '.join(sorted(problems)[:5])}):"
            " the checkpoint is damaged, use another one"
        )
    return model


def load_model(
    model_name_or_path: str,
    tasks: list[str] | None,
    layout: str | None = None,
    max_seq_length: int | None = None,
    **options,
) -> CaMtlModel:
    """A CA-MTL model from a model name, a stock backbone (hub name or directory) or a camtl checkpoint.

    ``tasks`` None means all GLUE tasks for a new model, the checkpoint's own tasks for a checkpoint;
    ``max_seq_length`` None means 128 for a new model, the checkpoint's own for a checkpoint.
    A backbone other than the CA-MTL names gets layout "none" (the multitask baseline) unless ``layout``
    is given. ``options`` set CaMtlConfig fields (pooling, attention_blocks, loss_reduction, ...); for a
    checkpoint the architectural ones must agree with it.
    """
    unknown = sorted(set(options) - set(CaMtlConfig.__dataclass_fields__))
    if unknown:
        raise UsageError(f"unknown model option(s) {', '.join(unknown)}: see CaMtlConfig")
    if max_seq_length is not None and max_seq_length < 1:
        raise UsageError(f"max_seq_length must be positive, got {max_seq_length}")
    tasks = None if tasks is None else resolve_tasks(tasks)
    location, named_layout = resolve(model_name_or_path)
    path = Path(location).expanduser()
    if path.is_dir():
        saved = read_model_config(path)
        if saved.get("model_type") == "camtl":
            return _load_checkpoint(path, saved, tasks, layout, max_seq_length, options)
        check_options_apply(layout or named_layout or "none", options)
        pretrained = _load_backbone(str(path), local=True, max_seq_length=max_seq_length or 128)
    else:
        check_hub_id(location)
        check_options_apply(layout or named_layout or "none", options)
        pretrained = _load_backbone(location, local=False, max_seq_length=max_seq_length or 128)
    max_seq_length = max_seq_length or 128
    if options.get("pooling") == "auto":
        options["pooling"] = declared_pooling(location)
    config = CaMtlConfig(
        layout=layout or named_layout or "none",
        backbone=pretrained.config.to_dict(),
        backbone_name=model_name_or_path,
        tasks=tasks,
        max_seq_length=max_seq_length,
        **options,
    )
    model = CaMtlModel(config)
    _load_pretrained_weights(model, pretrained)
    if model.heads.mlm is not None:
        _load_pretrained_mlm_head(model, location, local=path.is_dir())
    logger.info("loaded the %s backbone %s (layout %s)", model.family.name, model_name_or_path, config.layout)
    return model


# Files that hold a tokenizer's vocabulary; without one transformers 5 builds a tokenizer of its special
# tokens alone, which turns every word into [UNK] without an error.
_VOCABULARY_FILES = (
    "tokenizer.json", "vocab.txt", "vocab.json", "spm.model", "tokenizer.model", "sentencepiece.bpe.model",
)  # fmt: skip


def load_tokenizer(model_name_or_path: str) -> PreTrainedTokenizerBase:
    """The fast tokenizer of a model name, a backbone, or a camtl checkpoint (saved inside it); a local
    directory's is checked to exist and to fit the model's embeddings."""
    location, _ = resolve(model_name_or_path)
    path = Path(location).expanduser()
    if path.is_dir():
        saved = read_model_config(path)
        _check_model_type(path, saved)  # the model's own problems first: they are the ones to fix
        if not any((path / name).is_file() for name in _VOCABULARY_FILES):
            raise UsageError(
                f"'{path}' has no tokenizer files (every word would become [UNK]): save the tokenizer"
                f" beside the model with tokenizer.save_pretrained('{path}')"
            )
        # A camtl checkpoint's config is no tokenizer's: given the backbone's, AutoTokenizer does not read
        # it as a bare PretrainedConfig ("You are using a model of type camtl to instantiate ...").
        backbone = saved.get("backbone") if saved.get("model_type") == "camtl" else None
        options = {"config": AutoConfig.for_model(**backbone)} if backbone else {}
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path), use_fast=True, **options)
        except (OSError, ValueError) as error:
            reason = str(error).splitlines()[0]
            raise UsageError(
                f"no usable tokenizer in '{path}' ({reason}): save the tokenizer into it"
            ) from None
        _check_vocabulary(path, tokenizer, (backbone or saved).get("vocab_size"))
        return tokenizer
    check_hub_id(location)
    return from_hub(
        lambda **kwargs: AutoTokenizer.from_pretrained(location, use_fast=True, **kwargs), location
    )


def _check_vocabulary(path: Path, tokenizer: PreTrainedTokenizerBase, vocab_size) -> None:
    """The tokenizer's ids index the model's embeddings: none past them (an index error mid-run), and not
    fewer than half of them (another model's tokenizer, or a vocabulary file cut short). Models pad their
    embeddings past the vocabulary (ModernBERT, DeBERTa-v3), so a smaller tokenizer is normal."""
    if not isinstance(vocab_size, int):  # nested configs (text_config ...): the family check answers
        return
    tokens = len(tokenizer)
    if tokens > vocab_size or 2 * tokens < vocab_size:
        problem = "above" if tokens > vocab_size else "far below"
        raise UsageError(
            f"the tokenizer in '{path}' has {tokens} tokens, {problem} the model's vocab_size {vocab_size}:"
            f" it is not this model's: save the model's own with tokenizer.save_pretrained('{path}')"
        )


def _backbone_config_on_disk(model_name_or_path: str) -> dict | None:
    """The backbone's config.json as a dict, from disk (a directory, the bundled encoder or the Hugging Face
    cache; a camtl checkpoint's backbone), without loading weights; None when it is not on disk."""
    location, _ = resolve(model_name_or_path)
    try:
        config, _ = PretrainedConfig.get_config_dict(location, local_files_only=True)
    except OSError:
        return None
    return (config.get("backbone") or {}) if config.get("model_type") == "camtl" else config


def encoder_layer_count(model_name_or_path: str) -> int | None:
    """Encoder layers of a model, from its config on disk; None when only loading the model can tell."""
    config = _backbone_config_on_disk(model_name_or_path)
    return None if config is None else config.get("num_hidden_layers")


def position_limit(model_name_or_path: str) -> int | None:
    """The longest sequence a model's position embeddings allow, from its config on disk (None when it is
    not on disk)."""
    config = _backbone_config_on_disk(model_name_or_path)
    if config is None or "model_type" not in config:
        return None
    return usable_positions(AutoConfig.for_model(**config))
