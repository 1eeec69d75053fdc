"""Examples: the rows of one task split, as every reader returns them and tokenization takes them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Examples:
    """The rows of one task split: texts, labels (class index or score) and submission IDs."""

    task: str
    split: str
    text_a: list[str]
    text_b: list[str] | None
    labels: list[float] | None
    ids: list[str]
    skipped: int = 0  # malformed training rows left out
    # Multiple choice: the choices of each example (text_a is the context). Token classification: text_a
    # holds each example's words and labels their tag ids. Masked LM: text_a holds the raw texts.
    choices: list[list[str]] | None = None

    def __len__(self) -> int:
        return len(self.text_a)
