"""`ml-platform trace REQUEST_ID [--model NAME] [--json]`: a logged prediction's chain (see `core.trace`), from
the prediction logs under the home (ML_PLATFORM_HOME/predictions, every model's unless --model) and the store
MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI (else the home's). Exit status 0 the whole chain, 1 part of it
missing (the store unreachable, the version deleted, a link never recorded: named), 2 the request is not in
any log searched. Read-only. Never imports the Dagster wiring.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the command's work (MLflow) is imported when it runs
    from ml_platform.core.trace import LoggedRequest, Trace

SHOWN_DAYS = 3  # the text shows the first and last few days' data versions (JSON: all)


def add_parser(commands: argparse._SubParsersAction) -> None:
    trace = commands.add_parser(
        "trace", help="a logged prediction's chain: version, aliases, MLflow and Dagster runs, data, code"
    )
    trace.add_argument("request_id", help="the request id an answer carried (v1 body, X-Request-Id header)")
    trace.add_argument("--model", help="search this model's prediction log only (default: every model's)")
    trace.add_argument("--json", action="store_true", help="print the chain as one JSON object")


def run(args: argparse.Namespace) -> int:
    from ml_platform.core.mlflow_store import resolve_uris
    from ml_platform.core.trace import trace
    from ml_platform.serving.log_files import LOG_FOLDER
    from ml_platform.serving.prediction_log import log_path
    from ml_platform.settings import HOME_ENV

    home = Path(os.environ.get(HOME_ENV) or ".ml_platform").resolve()  # not created: reading only
    logs = [log_path(home, args.model)] if args.model else sorted((home / LOG_FOLDER).glob("*.sqlite"))
    searched = ", ".join(str(path) for path in logs) or f"{home / LOG_FOLDER} (no logs)"
    if not home.is_dir():
        return _not_found(f"no platform home at {home} ({HOME_ENV}): no prediction log to search")
    found: list[LoggedRequest] = []
    for path in logs:
        if not path.is_file():
            continue
        try:
            found += _entries(path, args.request_id)
        except sqlite3.Error as error:
            print(f"ml-platform trace: {path} cannot be read: {error}", file=sys.stderr)
    if not found:
        return _not_found(f"request {args.request_id!r} is not in the prediction logs searched: {searched}")
    result = trace(found[0], *resolve_uris(), entries=len(found))
    print(json.dumps(result.as_dict(), default=str) if args.json else text(result))
    return result.exit_code


def _not_found(message: str) -> int:
    print(f"ml-platform trace: {message}", file=sys.stderr)
    return 2


def _entries(path: Path, request_id: str) -> list[LoggedRequest]:
    from ml_platform.core.trace import LoggedRequest
    from ml_platform.serving.prediction_log import logged_request

    return [
        LoggedRequest(
            request_id=entry["request_id"],
            at=datetime.fromtimestamp(entry["ts"], UTC),
            model=entry["model"],
            version=str(entry["version"]),
            rows=int(entry["rows"]),
            routed=entry["routed"],
            shadow_version=entry["shadow_version"],
            latency_ms=float(entry["latency_ms"]),
            log=str(path),
        )
        for entry in logged_request(path, request_id)
    ]


def text(result: Trace) -> str:
    """The chain as aligned lines, request first, then the version's links; what is missing last."""
    request, links = result.request, result.links
    entries = f"; {result.entries} log entries carry this id, the first is shown" if result.entries > 1 else ""
    lines = [
        ("request", f"{request.request_id} ({request.rows} rows, {request.latency_ms:.1f} ms{entries})"),
        ("time", request.at.isoformat()),
        ("model", request.model),
        ("version", f"v{request.version} (routed: {request.routed})"),
        ("shadow", f"v{request.shadow_version}" if request.shadow_version else "-"),
        ("aliases then", ", ".join(result.aliases) or "-"),
        ("champion then", f"v{result.champion}" if result.champion else "unknown"),
        ("log", request.log),
    ]
    if links is not None:
        lines += _link_lines(result)
    lines += [("missing", what) for what in result.missing]
    lines += [("note", note) for note in result.notes]
    width = max(len(label) for label, _ in lines)
    return "\n".join(f"{label.ljust(width)}  {value}" for label, value in lines)


def _link_lines(result: Trace) -> list[tuple[str, str]]:
    links = result.links
    assert links is not None
    if links.run_id is None:
        return []
    days = sorted(links.data_versions.items())
    shown = [f"{day} {version[:12]}" for day, version in days[:SHOWN_DAYS]]
    if len(days) > 2 * SHOWN_DAYS:
        shown.append("…")
    shown += [f"{day} {version[:12]}" for day, version in days[max(SHOWN_DAYS, len(days) - SHOWN_DAYS) :]]
    state = "" if links.dirty is None else " (uncommitted changes)" if links.dirty else " (clean)"
    source = f"commit {links.commit}{state}" if links.commit else links.source_note or "-"
    experiment = f"experiment {links.experiment or '?'}, id {links.experiment_id}"
    return [
        ("mlflow run", f"{links.run_id} ({experiment})"),
        ("dagster run", links.dagster_run_id or "-"),
        ("window", f"{links.window or '-'} (partition {links.partition or '-'}, {links.window_days or '?'} days)"),
        ("data versions", f"{len(days)} days, digest {links.data_versions_digest or '-'}"),
        *[("", day) for day in shown],
        ("spec", f"digest {links.spec_digest or '-'}" + (f", {links.spec_artifact}" if links.spec_artifact else "")),
        ("source", source),
        *[(f"derived {name}", digest) for name, digest in links.derived.items()],
        ("model sha256", links.model_sha256 or "-"),
    ]
