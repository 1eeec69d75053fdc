"""``python -m camtl.bench speed|glue-mini|device [options]``: dispatch to the benchmark programs."""

from __future__ import annotations

import argparse
import sys

from camtl.bench import device, speed, study
from camtl.errors import exits_cleanly_on_usage_error


@exits_cleanly_on_usage_error
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m camtl.bench", description=__doc__)
    programs = parser.add_subparsers(dest="program", required=True)
    speed.add_arguments(programs.add_parser("speed", help=speed.__doc__.splitlines()[0]))
    study.add_arguments(programs.add_parser("glue-mini", help=study.__doc__.splitlines()[0]))
    device.add_arguments(programs.add_parser("device", help=device.__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    if args.program == "speed":
        speed.run(args)
    elif args.program == "device":
        device.run(args)
    else:
        study.run(args, command=" ".join(["python -m camtl.bench", *argv]))


if __name__ == "__main__":
    main()
