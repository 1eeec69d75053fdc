"""``python -m camtl.model summary``: build a model and print its parameter report."""

from __future__ import annotations

import argparse
import json

from camtl.errors import exits_cleanly_on_usage_error
from camtl.model.configuration import LAYOUTS, POOLINGS
from camtl.model.freezing import freeze_encoder_layers
from camtl.model.loading import load_model
from camtl.model.report import format_parameter_report, parameter_report


@exits_cleanly_on_usage_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m camtl.model", description="Inspect CA-MTL models.")
    commands = parser.add_subparsers(dest="command", required=True)
    summary = commands.add_parser("summary", help="build a model and print its parameter report")
    summary.add_argument(
        "--model_name_or_path", required=True, help="CA-MTL-base|large|mini, a backbone or a checkpoint"
    )
    summary.add_argument("--tasks", nargs="+", default=None, help="tasks (default: the nine GLUE tasks)")
    summary.add_argument("--layout", choices=LAYOUTS, default=None)
    summary.add_argument("--max_seq_length", type=int, default=None, help="default 128, or the checkpoint's")
    summary.add_argument("--pooling", choices=POOLINGS, default=None)
    summary.add_argument("--freeze_encoder_layers", default=None, help="e.g. 0-4")
    summary.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    options = {"pooling": args.pooling} if args.pooling else {}
    model = load_model(
        args.model_name_or_path, args.tasks, layout=args.layout, max_seq_length=args.max_seq_length, **options
    )
    if args.freeze_encoder_layers:
        freeze_encoder_layers(model, args.freeze_encoder_layers)
    report = parameter_report(model)
    if args.json:
        print(json.dumps(report))
    else:
        config = model.config
        print(
            f"{args.model_name_or_path}: {model.family.name} backbone, layout {config.layout},"
            f" max_seq_length {config.max_seq_length}, tasks {' '.join(config.tasks)}"
        )
        print(format_parameter_report(report))


if __name__ == "__main__":
    main()
