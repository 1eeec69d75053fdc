"""``python run.py config.json``: a JSON object {flag: value} read as command-line flags.

Each value is checked against its flag's type here, so a wrong one is reported with its key
(``config.json: key 'learning_rate': expected a number, got "fast"``) rather than as a flag the user
never typed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from transformers.hf_argparser import string_to_bool

from camtl.errors import UsageError
from camtl.tasks.structured_files import read_structured_file

EXPECTED = {int: "a whole number", float: "a number", string_to_bool: "true or false"}


def _as_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _checked_values(path: Path, key: str, value, action: argparse.Action) -> list[str]:
    """The value as the flag's command-line words, or a UsageError naming the key."""

    def wrong(expected: str) -> UsageError:
        return UsageError(f"{path}: key {key!r}: expected {expected}, got {json.dumps(value)}")

    if action.nargs == 0:  # a switch such as --no_average_tokens_across_devices
        if not isinstance(value, bool):
            raise wrong("true or false")
        return []
    many = action.nargs in ("+", "*")
    items = value if isinstance(value, list) and (many or len(value) == 1) else [value]
    if isinstance(value, list) and not many and len(value) != 1:
        raise wrong("a single value")
    words = []
    for item in items:
        if isinstance(item, bool) and action.type in (int, float):
            raise wrong(EXPECTED[action.type])
        text = _as_text(item)
        if action.type is not None and action.type is not str:
            try:
                converted = action.type(text)
            except (ValueError, TypeError, argparse.ArgumentTypeError):
                raise wrong(EXPECTED.get(action.type, "another value")) from None
            if action.choices and converted not in action.choices:
                raise wrong(f"one of {', '.join(map(str, action.choices))}")
        words.append(text)
    return words


def config_file_to_flags(path: Path, parser: argparse.ArgumentParser) -> list[str]:
    """A JSON config {flag: value} as command-line flags, so it gets the same parsing and checks."""
    try:
        config = read_structured_file(path, yaml_allowed=False)
    except OSError as error:
        raise UsageError(f"cannot read the config file {path}: {error}") from None
    if not isinstance(config, dict):
        raise UsageError(f"the config file {path} must hold one JSON object of flag names to values")
    flags = []
    for key, value in config.items():
        action = parser._option_string_actions.get(f"--{key}")
        if action is None:
            raise UsageError(
                f"{path}: unknown key {key!r}: use a flag name of python run.py --help, without --"
            )
        if value is None:
            continue
        words = _checked_values(path, key, value, action)
        if action.nargs is None:  # one value: --key=value, so that a value such as "--x" is not a flag
            flags.append(f"--{key}={words[0]}")
        elif action.nargs != 0 or value:  # a switch set to false is left out
            flags += [f"--{key}", *(_list_item(path, key, word) for word in words)]
    return flags


def _list_item(path: Path, key: str, word: str) -> str:
    """An item of a list flag: argparse reads one that starts with '-' (and is no number) as a flag, and no
    spelling of the command line can pass it as a value."""
    if word.startswith("-"):
        try:
            float(word)
        except ValueError:
            raise UsageError(
                f"{path}: key {key!r}: the item {word!r} starts with '-', which a list flag cannot take:"
                f" rename it (or, for a path, write ./{word})"
            ) from None
    return word
