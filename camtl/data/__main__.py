"""``python -m camtl.data check``: validate a GLUE folder and count its examples."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from camtl.data.splits import DOWNLOAD_HINT, check_data_dir, format_check_report, task_folder_problem
from camtl.errors import UsageError, exits_cleanly_on_usage_error
from camtl.tasks import TASKS, canonical_task_name


def present_tasks(data_dir: Path) -> list[str]:
    """The tasks whose folder ``data_dir`` holds; none is an error saying why, as run.py says it."""
    if not data_dir.is_dir():
        problem = "is a file, not a directory" if data_dir.exists() else "does not exist"
        raise UsageError(f"--data_dir {data_dir} {problem}: get GLUE with `{DOWNLOAD_HINT}`")
    present = [name for name, task in TASKS.items() if task.folder and (data_dir / task.folder).is_dir()]
    if present:
        return present
    if not any(data_dir.iterdir()):
        raise UsageError(f"--data_dir {data_dir} is empty: get GLUE with `{DOWNLOAD_HINT}`")
    raise UsageError(
        task_folder_problem(data_dir)
        or f"--data_dir {data_dir} holds no task folder (such as RTE/ or SST-2/): pass the folder that holds"
        f" them, or get GLUE with `{DOWNLOAD_HINT}`"
    )


@exits_cleanly_on_usage_error
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m camtl.data", description="GLUE data tools")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate a GLUE folder and count its examples")
    check.add_argument("--data_dir", required=True)
    check.add_argument(
        "--tasks", nargs="+", default=None, help="default: every task whose folder is in --data_dir"
    )
    check.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)

    tasks = [canonical_task_name(t) for t in args.tasks] if args.tasks else present_tasks(Path(args.data_dir))
    report = check_data_dir(args.data_dir, tasks)
    if args.json:
        print(json.dumps({k: report[k] for k in ("tasks", "problems", "missing", "warnings", "labels")}))
    else:
        print(format_check_report(report))
    return 2 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
