"""The docs site builds with warnings as errors, and every command that README.md and the getting-started
page show runs here: the offline ones on tiny step counts, the ones that need the hub or hours (the
authors' BERT-base command, the downloader, the benchmarks) as far as parsing their flags."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from camtl.bench.common import replace_flags

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "glue"
HUB_MODELS = {"CA-MTL-base", "CA-MTL-large"}
# Set on a documented run.py command that really runs (replacing its own values of these flags), so the
# documented command keeps its other flags and only the budget shrinks.
TINY = {"max_steps": "2", "max_train_samples": "32", "max_eval_samples": "16", "max_predict_samples": "16",
        "max_seq_length": "32", "per_device_train_batch_size": "8", "num_train_epochs": None}  # fmt: skip
# Runs the program up to the end of its argparse parsing, then exits 0; a bad flag exits 2 there.
PARSE_ONLY = """
import argparse, runpy, sys
parse_args = argparse.ArgumentParser.parse_args
def parse_then_stop(self, *args, **kwargs):
    parse_args(self, *args, **kwargs)
    raise SystemExit(0)
argparse.ArgumentParser.parse_args = parse_then_stop
target, sys.argv = sys.argv[1], sys.argv[1:]
if target.endswith(".py"):
    runpy.run_path(target, run_name="__main__")
else:
    runpy.run_module(target, run_name="__main__", alter_sys=True)
"""


def test_the_site_builds_with_warnings_as_errors(tmp_path):
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    # The task-file values are rendered from the code, and the API page from the docstrings.
    assert "<code>masked_accuracy</code>" in (site / "task-files" / "index.html").read_text()
    assert 'id="camtl.api.load_split"' in (site / "api" / "index.html").read_text()


def documented_commands(document: str) -> list[list[str]]:
    """The shell commands of a document's bash blocks, continuation lines joined, comments dropped."""
    text = (REPO / document).read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                commands.append(argv)
    return commands


def expand(argv: list[str], env: dict[str, str]) -> list[str]:
    return [re.sub(r"\$(\w+)", lambda m: env[m.group(1)], arg) for arg in argv]


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", (REPO / "Makefile").read_text(), re.MULTILINE))


def make_run_commands() -> list[list[str]]:
    """What `make run` runs, as python arguments: run.py with RUN_FLAGS, then the margins."""
    makefile = (REPO / "Makefile").read_text().replace("\\\n", " ")
    flags = re.search(r"^RUN_FLAGS \?=(.*)$", makefile, re.MULTILINE).group(1)
    recipe = re.search(r"^run:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE).group(1)
    values = {"$(RUN_FLAGS)": flags, "$(DATA_DIR)": str(FIXTURES), "$(OUTPUT_DIR)": "output/main"}
    commands = []
    for line in recipe.splitlines():
        for name, value in values.items():
            line = line.replace(name, value)
        commands.append(shlex.split(line.replace("$(PY)", "")))
    return commands


def run(module: str, args: list[str], cwd: Path, parse_only: bool = False) -> None:
    """`python MODULE ARGS` (a script or a module) in cwd; with parse_only, until its flags are parsed."""
    target = str(REPO / module) if module.endswith(".py") else module
    if parse_only:
        command = [sys.executable, "-c", PARSE_ONLY, target, *args]
    else:
        command = (
            [sys.executable, target, *args]
            if module.endswith(".py")
            else [sys.executable, "-m", module, *args]
        )
    env = {**os.environ, "XDG_CACHE_HOME": str(cwd / "cache"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{module} {shlex.join(args)}\n{(result.stdout + result.stderr)[-3000:]}"


def check_python(args: list[str], document: str, cwd: Path) -> None:
    """Runs `python ARGS`, or parses its flags where running it needs the hub or hours."""
    from camtl.training.command_line import parse_arguments

    module, rest = (args[1], args[2:]) if args[0] == "-m" else (args[0], args[1:])
    if module == "run.py" and rest[0].endswith(".json"):
        config = json.loads(
            re.search(r"```json\n(.*?)```", (REPO / document).read_text(), re.DOTALL).group(1)
        )
        (cwd / rest[0]).write_text(json.dumps({**config, "data_dir": [str(FIXTURES)], "max_seq_length": 32}))
        run(module, rest, cwd)
    elif module == "run.py" and rest[rest.index("--model_name_or_path") + 1] in HUB_MODELS:
        parse_arguments(rest)  # a bad flag raises UsageError
    elif module == "run.py" and document == "Makefile":
        parse_arguments(rest)  # the main job takes 13 minutes
    elif module == "run.py":
        run(module, list(replace_flags(tuple(rest), **TINY)), cwd)
    elif module in ("download_glue_data.py", "camtl.bench"):  # the network, or hours
        run(module, rest, cwd, parse_only=True)
    elif module in ("camtl.data", "camtl.model"):
        run(module, rest, cwd)
    else:
        pytest.fail(f"{document}: no test covers `python {shlex.join(args)}`")


@pytest.mark.slow
@pytest.mark.parametrize("document", ["README.md", "docs/getting-started.md"])
def test_every_documented_command_runs(document, tmp_path):
    env = {}
    for argv in documented_commands(document):
        if argv[0] == "export":
            name, _ = argv[1].split("=", 1)
            # The data beside the checkout may be missing; the fixtures have every GLUE task.
            env[name] = str(FIXTURES) if name == "DATA_DIR" else argv[1].split("=", 1)[1]
            continue
        if argv[0] == "make":
            assert argv[1] in makefile_targets(), f"make {argv[1]}: no such target"
            for args in make_run_commands() if argv[1] == "run" else []:
                check_python(args, "Makefile", tmp_path)
            continue
        assert argv[0] == "python", f"{document}: no test covers `{shlex.join(argv)}`"
        check_python(expand(argv[1:], env), document, tmp_path)
