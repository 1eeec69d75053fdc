"""The Python API page's example (docs/api.md) runs as written, on the real data beside the checkout."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import camtl.api as camtl
from camtl.errors import UsageError

REPO = Path(__file__).resolve().parents[1]


def test_the_api_page_example_trains_and_evaluates(shared_glue, shared_data, tmp_path):
    page = (REPO / "docs" / "api.md").read_text()
    code = re.search(r"```python\n(.*?)```", page, re.DOTALL).group(1)
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)},  # the feature cache goes there
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    printed = result.stdout.strip().splitlines()[-1]
    for task in ("sts-b", "rte", "commonsenseqa", "glue_average", "average"):
        assert f"'{task}'" in printed


# The functions' own checks, on the GLUE fixtures and a tiny random BERT: each bad argument is one
# UsageError naming the function, the argument and the fix, before any model or data is loaded.

GLUE = REPO / "tests" / "fixtures" / "glue"


@pytest.fixture(scope="module")
def tiny_rte(tiny_bert):
    return camtl.build(str(tiny_bert), "rte", max_seq_length=32)


def rte_split(tokenizer, tmp_path, split="train", **options):
    options = {"max_examples": 8, "cache_dir": tmp_path, **options}
    return camtl.load_split("rte", split, str(GLUE), tokenizer, 32, **options)


def test_one_task_name_alone_is_a_one_task_list(tiny_rte, tmp_path):
    assert camtl.load_tasks("RTE") == ["rte"]
    model, tokenizer = tiny_rte
    assert list(model.config.tasks) == ["rte"]
    train = rte_split(tokenizer, tmp_path)  # a task name and a data folder given alone, as strings
    assert list(train) == ["rte"] and len(train["rte"]) == 8
    dev = camtl.load_split(["rte"], "dev", [Path(GLUE)], tokenizer, 32, max_examples=4, cache_dir=tmp_path)
    assert len(dev["rte"]) == 4


@pytest.mark.parametrize(
    "call, expected",
    [
        (lambda: camtl.load_tasks([]), "load_tasks: names is empty: name at least one"),
        (lambda: camtl.build("CA-MTL-mini", []), "build: tasks is empty: name at least one"),
        (lambda: camtl.build("CA-MTL-mini", "rte", max_seq_length=0), "build: max_seq_length must be"),
        (lambda: camtl.load_split([], "dev", GLUE, None), "load_split: tasks is empty"),
        (lambda: camtl.load_split("rte", "dev", 3, None), "load_split: data_dirs must be a list"),
        (lambda: camtl.load_tasks([5]), "load_tasks: names must hold str values, got 5"),
        (lambda: camtl.build("CA-MTL-mini", ["rte", None]), "build: tasks must hold str values, got None"),
        (lambda: camtl.load_split("rte", "dev", [GLUE, 3], None), "data_dirs must hold str or Path values"),
    ],
)
def test_empty_lists_and_bad_sizes_are_refused_before_loading(call, expected):
    with pytest.raises(UsageError, match=re.escape(expected)):
        call()


@pytest.mark.parametrize(
    "split, expected",
    [
        ("validation", "load_split: unknown split 'validation' (camtl calls the validation split dev):"),
        ("eval", "load_split: unknown split 'eval': choose from train, dev, test"),
    ],
)
def test_an_unknown_split_names_the_allowed_ones(split, expected, bundled_tokenizer, tmp_path):
    with pytest.raises(UsageError, match=re.escape(expected)):
        rte_split(bundled_tokenizer, tmp_path, split)


@pytest.mark.parametrize("max_examples", [0, -3, 2.5])
def test_max_examples_must_be_positive_like_the_command_line(max_examples, bundled_tokenizer, tmp_path):
    with pytest.raises(
        UsageError, match=f"load_split: max_examples must be a positive whole number, got {max_examples}"
    ):
        rte_split(bundled_tokenizer, tmp_path, max_examples=max_examples)


def test_a_misspelt_sampler_option_is_named_with_the_allowed_ones(tiny_rte, tmp_path):
    model, tokenizer = tiny_rte
    train = rte_split(tokenizer, tmp_path)
    with pytest.raises(UsageError) as error:
        camtl.train_loader(model, tokenizer, train, sampler="temperature", temprature=2)
    message = str(error.value)
    assert message.startswith("train_loader: unknown argument temprature: choose from")
    assert "temperature" in message and "percent_of_max_data_size" in message and "seed" not in message
    loader = camtl.train_loader(model, tokenizer, train, sampler="temperature", batch_size=4, temperature=2)
    assert sum(len(batch["labels"]) for batch in loader) == 8  # the correct spelling works


@pytest.mark.parametrize(
    "call, expected",
    [
        (lambda m, t, d: camtl.train_loader(m, t, d, batch_size=0), "train_loader: batch_size must be"),
        (lambda m, t, d: camtl.train_loader(m, t, d, seed=-1), "train_loader: seed must be"),
        (
            lambda m, t, d: camtl.train_loader(m, t, d, sampler="bogus"),
            "train_loader: unknown sampler 'bogus'",
        ),
        (lambda m, t, d: camtl.train_loader(m, t, {}), "train_loader: train holds no task's features"),
        (lambda m, t, d: camtl.evaluate(m, t, d, batch_size=0), "evaluate: batch_size must be a positive"),
        (lambda m, t, d: camtl.evaluate(m, t, {}), "evaluate: dev holds no task's features"),
        (
            lambda m, t, d: camtl.collator(t, pad_to_multple_of=8),
            "collator: unknown argument pad_to_multple_of",
        ),
        (lambda m, t, d: camtl.collator(t, pad_to_multiple_of=0), "collator: pad_to_multiple_of must be"),
    ],
)
def test_loaders_and_evaluation_refuse_bad_arguments_naming_them(call, expected, tiny_rte, tmp_path):
    model, tokenizer = tiny_rte
    with pytest.raises(UsageError, match=re.escape(expected)):
        call(model, tokenizer, rte_split(tokenizer, tmp_path, "dev"))


@pytest.mark.parametrize(
    "call, expected",
    [
        (
            lambda m, t, test: camtl.train_loader(m, t, test),
            "train_loader: train['rte'] holds the test split, which has no labels: pass load_split(tasks,"
            " 'train'",
        ),
        (
            lambda m, t, test: camtl.evaluate(m, t, test),
            "evaluate: dev['rte'] holds the test split, which has no labels: pass load_split(tasks, 'dev'",
        ),
        (
            lambda m, t, test: camtl.train_loader(m, t, {"rte": [1, 2]}),
            "train_loader: train['rte'] is a list, not a task's features",
        ),
    ],
)
def test_test_features_are_refused_for_training_and_scoring(call, expected, tiny_rte, tmp_path):
    model, tokenizer = tiny_rte
    with pytest.raises(UsageError, match=re.escape(expected)):
        call(model, tokenizer, rte_split(tokenizer, tmp_path, "test"))
