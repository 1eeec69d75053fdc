"""Many ``python run.py ...`` command lines at the price of one import of torch and transformers.

    python tests/forked_runs.py JOBS.json

JOBS.json is a list of {"name", "argv", "stdout", "stderr"}. This process imports run.py once, then forks
one child per job (PARALLEL at a time) that runs ``run.main(argv)`` as ``python run.py`` would, with
its stdout and stderr in the files named; RESULTS (JOBS.json with .results.json) maps each name to its
exit code, or minus the signal that ended it. Importing is most of the cost of a run that stops at a
bad input, so the bad-input catalogue and the fault-injection driver run their cases this way.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ["TOKENIZERS_PARALLELISM"] = "false"  # no tokenizer threads across fork()

import torch  # noqa: E402

import run  # noqa: E402

PARALLEL = max(2, min(4, os.cpu_count() or 2))


def child(argv: list[str], stdout: Path, stderr: Path, fault: Callable[[], None] | None = None) -> None:
    """In the forked child: ``run.main(argv)`` with its output in the files; never returns."""
    code = 99
    try:
        os.chdir(REPO)
        for fd, path in ((1, stdout), (2, stderr)):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND), fd)
        sys.argv = ["run.py", *argv]
        torch.set_num_threads(1)
        if fault:
            fault()
        run.main(argv)
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


Job = tuple[str, list[str], Path, Path, "Callable[[], None] | None"]


def run_all(jobs: list[Job]) -> dict[str, int]:
    """Fork the jobs, PARALLEL at a time; each one's exit code, or minus the signal that ended it."""
    results, running, pending = {}, {}, list(jobs)
    while pending or running:
        while pending and len(running) < PARALLEL:
            name, argv, stdout, stderr, fault = pending.pop(0)
            pid = os.fork()
            if pid == 0:
                child(argv, stdout, stderr, fault)
            running[pid] = name
        pid, status = os.wait()
        name = running.pop(pid)
        results[name] = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return results


def main() -> None:
    jobs_file = Path(sys.argv[1])
    jobs = json.loads(jobs_file.read_text())
    results = run_all([(j["name"], j["argv"], Path(j["stdout"]), Path(j["stderr"]), None) for j in jobs])
    jobs_file.with_suffix(".results.json").write_text(json.dumps(results))


if __name__ == "__main__":
    main()
