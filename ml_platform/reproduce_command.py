"""`ml-platform reproduce MODEL VERSION` (or `MODEL@alias`, or `MODEL @alias`): a registered version retrained
from its recorded recipe on the stored partitions of its window, and compared with what was registered (see
`core.reproduce`). Exit status 0 identical, 1 different (the diff says what), 2 cannot be reproduced. Reads the
store MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI (else the home's) and the storage ML_PLATFORM_STORAGE (else the
home's); writes only into a temporary folder. Never imports the Dagster wiring.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the command's work (pandas, MLflow, LightGBM) is imported when it runs
    from ml_platform.core.reproduce import Reproduction


def add_parser(commands: argparse._SubParsersAction) -> None:
    reproduce = commands.add_parser(
        "reproduce", help="retrain a registered version from its recorded recipe and compare, read-only"
    )
    reproduce.add_argument("model", help="the model's name, or NAME@ALIAS")
    reproduce.add_argument("version", nargs="?", help="a version number, or @ALIAS (e.g. @champion)")
    reproduce.add_argument(
        "--rebuild-data",
        action="store_true",
        help="build partitions that changed or are missing again from the source into a scratch store",
    )
    reproduce.add_argument("--json", action="store_true", help="print the result as one JSON object")
    reproduce.add_argument("--scratch", help="keep the downloaded recipe and the reproduced model in this folder")


def run(args: argparse.Namespace) -> int:
    from ml_platform import settings
    from ml_platform.core.mlflow_store import resolve_uris
    from ml_platform.core.reproduce import reproduce

    name, _, alias = args.model.partition("@")
    version = args.version or (f"@{alias}" if alias else None)
    if version is None or (alias and args.version):
        print("ml-platform reproduce: give MODEL VERSION, MODEL @ALIAS or MODEL@ALIAS", file=sys.stderr)
        return 2
    tracking_uri, registry_uri = resolve_uris()
    with tempfile.TemporaryDirectory(prefix="ml_platform_reproduce_") as folder, _stdout_to_stderr():
        result = reproduce(
            name,
            version,
            tracking_uri=tracking_uri,
            registry_uri=registry_uri,
            storage_url=settings.storage_url(),
            scratch=Path(args.scratch or folder),
            rebuild_data=args.rebuild_data,
        )
    print(json.dumps(result.as_dict(), default=str) if args.json else text(result))
    return result.exit_code


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Whatever the retrain writes to file descriptor 1 goes to stderr, so stdout holds only the answer (`--json`
    is one object): a Dask version's local cluster workers inherit it, and LightGBM prints its network's
    start-up there from threads whose log level its parameters never reach."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def text(result: Reproduction) -> str:
    """The result as a person reads it: the verdict and why, then what differs."""
    lines = [f"{result.verdict.value}: {result.reason}"]
    if result.recorded_sha256:
        reproduced = (result.reproduced_sha256 or "-")[:16]
        lines.append(f"  model sha256: recorded {result.recorded_sha256[:16]}, reproduced {reproduced}")
    lines += [f"  {change.describe()}" for change in result.partitions]
    lines += [f"  differs  {difference.describe()}" for difference in result.differences]
    lines += [
        f"  held-out {metric.name}: recorded {metric.recorded:.6f}, reproduced {metric.reproduced:.6f}"
        for metric in result.held_out
    ]
    lines += [f"  note  {note}" for note in result.notes]
    lines.append(f"  ({result.seconds:.1f} s)")
    return "\n".join(lines)
