"""``python -m camtl.data check``: validate a GLUE folder and count its examples."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from camtl.data.splits import check_data_dir, format_check_report
from camtl.errors import exits_cleanly_on_usage_error
from camtl.tasks import TASKS, canonical_task_name


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

    present = [name for name, task in TASKS.items() if (Path(args.data_dir) / task.folder).is_dir()]
    tasks = [canonical_task_name(t) for t in args.tasks] if args.tasks else present
    report = check_data_dir(args.data_dir, tasks)
    if args.json:
        print(json.dumps({k: report[k] for k in ("tasks", "problems", "missing", "warnings", "labels")}))
    else:
        print(format_check_report(report))
    return 2 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
