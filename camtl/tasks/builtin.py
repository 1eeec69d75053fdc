"""The built-in tasks beyond GLUE, for the data of ``../shared/data`` (its README says what is complete).

Splits that the data lacks are left out (``None``): asking for one is an error naming the file only when
the flags need it. WikiText-2 has no training split here, so ``wikitext2-mlm`` trains on the validation
text and evaluates on the test text. ``snli`` and ``scitail`` have no head of their own: the MNLI head
and a binary entailment head (RTE's) predict them, which measures transfer without training on them.
"""

from __future__ import annotations

from camtl.tasks.spec import SplitFormat, Task

_NLI = ("contradiction", "entailment", "neutral")
_ACCURACY = {"metrics": ("accuracy",), "primary_metric": "accuracy"}


def _jsonl(filename: str, **fields) -> SplitFormat:
    return SplitFormat(filename, format="jsonl", **fields)


_COPA = {"text_a": "{premise} What was the {question}?", "choices": ("choice1", "choice2"), "label": "label"}
_CSQA = {"text_a": "question.stem", "choices": "question.choices.text", "label": "answerKey", "index": "id"}
_CB = {"text_a": "premise", "text_b": "hypothesis", "label": "label", "index": "idx"}
_WIC = {"text_a": "{word}: {sentence1}", "text_b": "sentence2", "label": "label", "index": "idx"}
_CONLL = {"format": "conll", "text_a": "tokens", "label": "tags"}

BUILTIN_TASKS: tuple[Task, ...] = (
    Task(
        "commonsenseqa",
        "CommonsenseQA",
        train=_jsonl("train_rand_split.jsonl", **_CSQA),
        dev=_jsonl("dev_rand_split.jsonl", **_CSQA),
        test=_jsonl("test_rand_split_no_answers.jsonl", **_CSQA),
        labels=("A", "B", "C", "D", "E"),
        head="commonsenseqa",
        type="multiple_choice",
        aliases=("csqa",),
        **_ACCURACY,
    ),
    Task(
        "copa",
        "SuperGLUE/COPA",
        train=_jsonl("train.jsonl", **_COPA),
        dev=_jsonl("val.jsonl", **_COPA, index="idx"),
        test=None,
        labels=("0", "1"),
        head="copa",
        type="multiple_choice",
        **_ACCURACY,
    ),
    Task(
        "cb",
        "SuperGLUE/CB",
        train=_jsonl("train.jsonl", **_CB),
        dev=_jsonl("val.jsonl", **_CB),
        test=_jsonl("test.jsonl", **_CB),
        labels=_NLI,
        metrics=("accuracy", "macro_f1"),
        primary_metric="accuracy",
        head="cb",
    ),
    Task(
        "wic",
        "SuperGLUE/WiC",
        # The training split is an export: tab-separated with CSV quoting, labels 0/1 (val: false/true).
        train=SplitFormat(
            "train.tsv",
            format="tsv",
            text_a="{word}: {sentence1}",
            text_b="sentence2",
            label="label",
            index="index",
        ),  # fmt: skip
        dev=_jsonl("val.jsonl", **_WIC),
        test=None,
        labels=("false", "true"),
        label_names=("false", "true"),
        head="wic",
        **_ACCURACY,
    ),
    Task(
        "boolq",
        "SuperGLUE/BoolQ",
        train=None,
        dev=_jsonl("val.jsonl", text_a="question", text_b="passage", label="label", index="idx"),
        test=None,
        labels=("false", "true"),
        head="boolq",
        **_ACCURACY,
    ),
    Task(
        "wnut17",
        "WNUT17",
        train=SplitFormat("wnut17train.conll", **_CONLL),
        dev=SplitFormat("emerging.dev.conll", **_CONLL),
        test=SplitFormat("emerging.test.annotated", **_CONLL),
        labels=(
            "O",
            *(
                f"{edge}-{kind}"
                for kind in ("corporation", "creative-work", "group", "location", "person", "product")
                for edge in "BI"
            ),
        ),  # fmt: skip
        metrics=("entity_f1", "entity_precision", "entity_recall"),
        primary_metric="entity_f1",
        head="wnut17",
        type="token_classification",
        aliases=("wnut-2017", "wnut2017"),
    ),
    Task(
        "wikitext2-mlm",
        "WikiText-2",
        train=SplitFormat("wiki.valid.tokens", format="text", text_a="text"),
        dev=SplitFormat("wiki.test.tokens", format="text", text_a="text"),
        test=None,
        labels=(),
        metrics=("masked_accuracy", "masked_loss"),
        primary_metric="masked_accuracy",
        head="wikitext2-mlm",
        type="masked_lm",
        aliases=("wikitext-2-mlm",),
    ),
    Task(
        "snli",
        "SNLI",
        train=None,
        dev=SplitFormat("dev.tsv", format="tsv", text_a="premise", text_b="hypothesis", label="label"),
        test=SplitFormat("test.tsv", format="tsv", text_a="premise", text_b="hypothesis", label="label"),
        labels=_NLI,
        label_names=("entailment", "neutral", "contradiction"),  # the file's 0, 1, 2
        head="mnli",
        **_ACCURACY,
    ),
    Task(
        "scitail",
        "SciTail",
        train=None,
        dev=_jsonl("test.jsonl", text_a="premise", text_b="hypothesis", label="label"),  # the only split here
        test=None,
        labels=("entailment", "not_entailment"),
        head="rte",
        **_ACCURACY,
    ),
)
