"""The Python API page's example (docs/api.md) runs as written, on the real data beside the checkout."""

import os
import re
import subprocess
import sys
from pathlib import Path

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
