"""JSON and YAML files a user writes (task files, run.py's JSON config), read strictly: UTF-8 with a
leading BOM dropped, as every data file is read, and a key given twice in one mapping refused, where
both formats would silently keep the last value."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from camtl.errors import UsageError


class _KeyTwice(Exception):
    """(key, line or None): a key given twice in one mapping."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = self.construct_object(key_node)
                if key in seen:
                    raise _KeyTwice(key, key_node.start_mark.line + 1)
                seen.add(key)
        return super().construct_mapping(node, deep)


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    mapping = dict(pairs)
    if len(mapping) < len(pairs):
        raise _KeyTwice(next(key for i, (key, _) in enumerate(pairs) if key in dict(pairs[:i])), None)
    return mapping


def read_structured_file(path: Path, yaml_allowed: bool = True) -> object:
    """The JSON (``.json``) or YAML (any other suffix, when ``yaml_allowed``) content of ``path``; None for
    an empty file. A file that is not UTF-8, does not parse, or gives a key twice: one UsageError line."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UsageError(f"{path} is not valid UTF-8 ({error.reason}): save the file as UTF-8") from None
    if not text.strip():  # JSON cannot parse it, YAML reads it as nothing: one answer for both
        return None
    try:
        if path.suffix == ".json" or not yaml_allowed:
            return json.loads(text, object_pairs_hook=_unique_keys)
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        reason = str(error).replace("\n", " ")
        raise UsageError(f"{path} cannot be read ({reason}): fix its syntax") from None
    except _KeyTwice as twice:
        key, line = twice.args
        where = f"{path}:{line}" if line else f"{path}"
        raise UsageError(f"{where}: key {key!r} is given twice: keep one") from None
