"""`ml-platform`: the command line. It never imports the Dagster wiring, so it starts fast.

  ml-platform check [PATH]   validate one spec file or a folder of specs (default: ML_PLATFORM_SPECS or the
                             bundled specs) without starting Dagster; exit status 1 on any error
"""

from __future__ import annotations

import argparse
import sys

from ml_platform.spec import SpecError, load_spec, spec_files


def check(path: str | None) -> int:
    try:
        files = spec_files(path)
    except SpecError as error:
        print(error, file=sys.stderr)
        return 1
    if not files:
        print(f"{path}: no .yaml specs found", file=sys.stderr)
        return 1
    failed = 0
    names: dict[str, str] = {}
    for file in files:
        try:
            spec = load_spec(file)
        except SpecError as error:
            print(error, file=sys.stderr)
            failed += 1
            continue
        if spec.name in names:
            print(f"{file}: name: found {spec.name!r}, already used by {names[spec.name]}; "
                  "allowed: a name no other spec uses", file=sys.stderr)
            failed += 1
            continue
        names[spec.name] = str(file)
        print(f"ok  {file}  ({spec.name}: {spec.task}, {len(spec.features.names)} features, "
              f"source {spec.source.kind}, {spec.partitions.cadence} partitions)")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ml-platform", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check_parser = commands.add_parser("check", help="validate model specs without starting Dagster")
    check_parser.add_argument("path", nargs="?", help="a spec file or a folder of specs")
    args = parser.parse_args(argv)
    if args.command == "check":
        return check(args.path)
    return 2


if __name__ == "__main__":
    sys.exit(main())
