"""`ml-platform`: the command line. It never imports the Dagster wiring, so it starts fast.

ml-platform check [PATH] [--data [--rows N]]
                           validate one spec file or a folder of specs (default: ML_PLATFORM_SPECS or the
                           bundled specs) without starting Dagster; exit status 1 on any error. --data also reads
                           a sample of each spec's source (its newest file or first rows, at most N, default
                           10000) and refuses what the data contradicts: a missing column, a dtype against the
                           expectations, text in a numeric feature, a text binary target without
                           target.positive, a multiclass target with one class
ml-platform workspace [ROOT] [--output FILE]
                           workspace.yaml with one code location per team folder of specs under ROOT (default:
                           ML_PLATFORM_SPECS), so a broken spec fails its own team's location only
ml-platform schema [--output FILE]
                           the JSON Schema of a model spec, for editors (completion and hover docs through a
                           `# yaml-language-server: $schema=...` line); the repository keeps it in
                           docs/spec.schema.json
ml-platform serve --model NAME [--host 127.0.0.1] [--port N] [--workers N] [--ssl-certfile F --ssl-keyfile F]
                           serve the model's `champion` over HTTP(S); reloads when the alias moves
ml-platform endpoints [--json]
                           the local endpoints this home (ML_PLATFORM_HOME) started: model, version served,
                           port, pid, and whether the process is alive (stale records are shown as such)
ml-platform stop --model NAME [--port N]
                           stop the model's local endpoint (its process group); exit status 1 if none
ml-platform review (--base FOLDER | --base-ref GIT_REF) [--head FOLDER] [--markdown F] [--json F] [--plots DIR]
                           judge a change to the specs before it merges: what it rebuilds, and each changed
                           model trained and gated against its production champion, read-only; exit status 0
                           pass, 1 a gate would fail, 2 a spec error, 3 production unreachable
ml-platform reproduce MODEL (VERSION | @ALIAS) [--rebuild-data] [--json]
                           retrain a registered version from its recorded recipe on the stored partitions of
                           its window and compare model bytes, manifest and held-out metrics, read-only; exit
                           status 0 identical, 1 different (a changed partition named, or the diff), 2 cannot
                           (a partition or an artifact missing); --rebuild-data rebuilds changed partitions
                           from the source into a scratch store
ml-platform trace REQUEST_ID [--model NAME] [--json]
                           a logged prediction's chain, read-only: time, version and route, the aliases and the
                           champion at that moment, the MLflow run, window and each day's data version, spec
                           digest, commit, derived digests, the Dagster run; exit status 1 part of it missing
                           (named), 2 the request in no prediction log under ML_PLATFORM_HOME
ml-platform simulate --model NAME --days N [--start DAY] [--drift hot_weather|late_departures|swap_carriers]
                           replay N days of real traffic through the endpoint (default: the N days before
                           yesterday's replayed day), optionally with an injected drift
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, timedelta
from pathlib import Path

from ml_platform import reproduce_command, trace_command
from ml_platform.spec import SpecError, load_spec, spec_files


def check(path: str | None, data: bool = False, rows: int | None = None) -> int:
    """Validate the specs; with `data`, also check each valid spec against a sample of at most `rows` rows of
    its source. One broken spec fails alone: the others are still checked and reported."""
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
            print(
                f"{file}: name: found {spec.name!r}, already used by {names[spec.name]}; "
                "allowed: a name no other spec uses",
                file=sys.stderr,
            )
            failed += 1
            continue
        names[spec.name] = str(file)
        sampled = ""
        if data:
            from ml_platform.core.data_check import DEFAULT_ROWS, check_data

            checked = check_data(spec, rows or DEFAULT_ROWS)
            if checked.problems:
                print(checked.message(file), file=sys.stderr)
                failed += 1
                continue
            sampled = f"; data: {checked.rows} rows of {checked.where}"
        print(
            f"ok  {file}  ({spec.name}: {spec.task}, {len(spec.features.names)} features, "
            f"source {spec.source.kind}, {spec.partitions.cadence} partitions{sampled})"
        )
        for deprecation in spec.deprecations:  # still valid, so not a failure: the author is told the fix
            print(f"{file}: {deprecation}", file=sys.stderr)
    return 1 if failed else 0


def workspace(root: str | None, output: str | None) -> int:
    from ml_platform import locations

    try:
        text = locations.workspace_yaml(Path(root) if root else locations.specs_root())
    except SpecError as error:
        print(error, file=sys.stderr)
        return 1
    return _emit(text, output, f": {text.count('location_name:')} code locations")


def schema(output: str | None) -> int:
    from ml_platform.spec.json_schema import spec_schema_text

    return _emit(spec_schema_text(), output)


def _emit(text: str, output: str | None, wrote: str = "") -> int:
    """Print `text`, or write it to the file `output` and say so (`wrote` adds to that line)."""
    if output:
        Path(output).write_text(text)
        print(f"wrote {output}{wrote}")
    else:
        print(text, end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ml-platform", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check_parser = commands.add_parser("check", help="validate model specs without starting Dagster")
    check_parser.add_argument("path", nargs="?", help="a spec file or a folder of specs")
    check_parser.add_argument(
        "--data", action="store_true", help="also check each spec against a sample of its source's data"
    )
    check_parser.add_argument(
        "--rows", type=_positive, metavar="N", help="with --data: read at most N rows of each source (default 10000)"
    )
    workspace_parser = commands.add_parser("workspace", help="workspace.yaml: one code location per team folder")
    workspace_parser.add_argument("root", nargs="?", help="the folder of team folders (default: ML_PLATFORM_SPECS)")
    workspace_parser.add_argument("--output", help="write it to this file instead of printing it")
    schema_parser = commands.add_parser("schema", help="the JSON Schema of a model spec, for editors")
    schema_parser.add_argument("--output", help="write it to this file instead of printing it")
    serve_parser = commands.add_parser("serve", help="serve a model's champion over HTTP")
    serve_parser.add_argument("--model", required=True, help="the model's name (its spec's `name`)")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=None, help="default: the spec's serving.port, else 8080")
    serve_parser.add_argument("--model-dir", help="serve this model folder instead of the registry's champion")
    serve_parser.add_argument("--model-version", help="the version to report for --model-dir (default: 'local')")
    serve_parser.add_argument(
        "--log", help="prediction log file (default: ML_PLATFORM_HOME/predictions/<model>.sqlite)"
    )
    serve_parser.add_argument("--reload-interval", type=float, default=5.0, help="seconds between alias checks")
    serve_parser.add_argument(
        "--workers",
        type=int,
        choices=range(1, 65),
        metavar="N",
        help="worker processes on the one port (default: the spec's serving.workers, else 1)",
    )
    serve_parser.add_argument("--ssl-certfile", help="serve HTTPS with this PEM certificate (chain)")
    serve_parser.add_argument("--ssl-keyfile", help="the certificate's private key (PEM, PKCS#8)")
    endpoints_parser = commands.add_parser("endpoints", help="list the local endpoints this home started")
    endpoints_parser.add_argument("--json", action="store_true", help="one JSON object per endpoint")
    stop_parser = commands.add_parser("stop", help="stop a model's local endpoint")
    stop_parser.add_argument("--model", required=True, help="the model's name (its spec's `name`)")
    stop_parser.add_argument("--port", type=int, help="only the endpoint on this port")
    simulate_parser = commands.add_parser("simulate", help="replay real traffic through the endpoint")
    simulate_parser.add_argument("--model", required=True)
    simulate_parser.add_argument("--days", type=int, required=True)
    simulate_parser.add_argument("--start", type=date.fromisoformat, help="first day (YYYY-MM-DD)")
    simulate_parser.add_argument("--drift", choices=["hot_weather", "late_departures", "swap_carriers"])
    simulate_parser.add_argument("--url", help="endpoint base URL (default: http://127.0.0.1:<serving.port>)")
    simulate_parser.add_argument("--batch", type=int, default=50, help="rows per request")
    _review_parser(commands)
    reproduce_command.add_parser(commands)
    trace_command.add_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "reproduce":
        return reproduce_command.run(args)
    if args.command == "trace":
        return trace_command.run(args)
    if args.command == "review":
        return review_command(args)
    if args.command == "simulate":
        return simulate_command(args)
    if args.command == "check":
        if args.rows and not args.data:
            parser.error("--rows goes with --data")
        return check(args.path, args.data, args.rows)
    if args.command == "workspace":
        return workspace(args.root, args.output)
    if args.command == "schema":
        return schema(args.output)
    if args.command == "serve":
        return serve(args)
    if args.command == "endpoints":
        return endpoints_command(args)
    if args.command == "stop":
        return stop_command(args)
    return 2


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a whole number of rows, 1 or more (found {text!r})")
    return int(text)


def _review_parser(commands) -> None:
    review = commands.add_parser("review", help="judge a change to the specs against production, read-only")
    base = review.add_mutually_exclusive_group(required=True)
    base.add_argument("--base", help="the specs folder as production runs it")
    base.add_argument("--base-ref", help="a git revision: the base is the head folder as that revision has it")
    review.add_argument("--head", help="the changed specs folder (default: ML_PLATFORM_SPECS, else the bundled)")
    review.add_argument("--markdown", help="write the Markdown report to this file (default: print it)")
    review.add_argument("--json", dest="json_path", help="write the JSON report to this file")
    review.add_argument("--plots", help="write the candidates' plots to this folder (the Markdown links them)")
    review.add_argument("--changes-only", action="store_true", help="report the changes; train no candidate")


def review_command(args) -> int:
    """`ml-platform review`: the report on stdout (or --markdown), JSON beside it; the verdict as exit status."""
    import os
    import tempfile

    from ml_platform import settings
    from ml_platform.core.recipe import working_tree
    from ml_platform.review import report
    from ml_platform.review.run import at_revision, run_review, specs_at_revision, stored_features_days
    from ml_platform.spec.loading import BUNDLED_SPECS, SPECS_ENV

    head = Path(args.head or os.environ.get(SPECS_ENV) or BUNDLED_SPECS)
    with tempfile.TemporaryDirectory(prefix="ml_platform_base_") as scratch:
        try:
            if args.base_ref:
                base = specs_at_revision(args.base_ref, head, Path(scratch) / "base")
                read_base, label = at_revision(args.base_ref, head), f"{head} at {args.base_ref}"
            else:
                base, read_base, label = Path(args.base), working_tree, args.base
            review = run_review(
                base,
                head,
                read_base=read_base,
                base_label=label,
                candidates=not args.changes_only,
                stored_days=stored_features_days(settings.storage_url()),
            )
        except SpecError as error:
            print(error, file=sys.stderr)
            return report.SPEC_ERROR
    text = report.markdown(review, Path(args.plots) if args.plots else None)
    if args.markdown:
        Path(args.markdown).write_text(text)
    else:
        print(text, end="")
    if args.json_path:
        Path(args.json_path).write_text(report.dumps(review))
    if review.unreachable:
        print(f"production unreachable: {review.unreachable}", file=sys.stderr)
    return review.exit_code


def endpoints_command(args) -> int:
    """List the endpoints this home started, alive or not."""
    import json

    from ml_platform import settings
    from ml_platform.core.endpoints import list_endpoints

    home = settings.home()
    found = list_endpoints(home)
    if args.json:
        for endpoint in found:
            print(json.dumps(endpoint.as_dict()))
        return 0
    if not found:
        print(f"no endpoints started from {home}")
        return 0
    rows = [("MODEL", "VERSION", "PORT", "PID", "STATE", "URL", "STARTED")]
    rows += [(e.model, e.version or "-", str(e.port), str(e.pid), e.state, e.url, e.started_at) for e in found]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip())
    return 0


def stop_command(args) -> int:
    """Stop a model's endpoint(s) by process group; say what was stopped or why nothing was."""
    from ml_platform import settings
    from ml_platform.core.endpoints import EndpointError, stop_endpoints

    try:
        results = stop_endpoints(settings.home(), args.model, args.port)
    except EndpointError as error:
        print(f"ml-platform stop: {error}", file=sys.stderr)
        return 1
    for result in results:
        endpoint = result.endpoint
        served = f" v{endpoint.version}" if endpoint.version else ""
        print(f"{endpoint.model}{served} on {endpoint.url} (pid {endpoint.pid}): {result.outcome}")
    if not any(result.outcome == "stopped" for result in results):
        print(f"ml-platform stop: no running endpoint of {args.model!r}", file=sys.stderr)
        return 1
    return 0


def simulate_command(args) -> int:
    """Replay days through the endpoint and print one JSON line per day."""
    import json
    import os

    from ml_platform import settings
    from ml_platform.simulate import simulate

    spec = next((s for s in (load_spec(f) for f in spec_files()) if s.name == args.model), None)
    if spec is None:
        print(f"no spec named {args.model!r} in {spec_files()}", file=sys.stderr)
        return 1
    start = args.start or (date.today() - timedelta(days=args.days + 1))
    days = [start + timedelta(days=i) for i in range(args.days)]
    url = args.url or f"http://127.0.0.1:{spec.serving.port}"
    for summary in simulate(
        spec, url, days, settings.home() / "replay", args.drift, args.batch, os.environ.get("ML_PLATFORM_API_TOKEN")
    ):
        print(json.dumps(summary), flush=True)
    return 0


def serve(args) -> int:
    """Run the endpoint on Granian (a Rust HTTP server that enforces header size and time limits, closes idle
    connections and runs N worker processes on one port); the spec, when found, sets its limits. While it runs,
    the server is recorded under the home (`ml-platform endpoints`), and forgets it on its way out.
    Length: one linear recipe (spec, config, environment, server settings, record, run), kept in order."""
    import os
    import shutil

    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server import Server

    from ml_platform import settings
    from ml_platform.core.endpoints import forget_endpoint, record_endpoint
    from ml_platform.serving.config import CONFIG_ENV, MULTIPROC_ENV, ServeConfig, from_spec
    from ml_platform.serving.prediction_log import log_path
    from ml_platform.spec import Limits

    spec = None
    try:
        spec = next((s for s in (load_spec(f) for f in spec_files()) if s.name == args.model), None)
    except SpecError as error:
        print(f"warning: specs not loaded, using defaults: {error}", file=sys.stderr)
    home = settings.home()
    where = {
        "model": args.model,
        "log_path": args.log or str(log_path(home, args.model)),
        "model_dir": args.model_dir,
        "model_version": args.model_version,
        "reload_interval_s": args.reload_interval,
    }
    config = from_spec(spec, **where) if spec else ServeConfig(**where)
    limits = spec.serving.limits if spec else Limits()
    port = args.port or (spec.serving.port if spec else 8080)
    workers = args.workers or (spec.serving.workers if spec else 1)
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        print("ml-platform serve: --ssl-certfile and --ssl-keyfile go together", file=sys.stderr)
        return 2
    # every worker reads the same settings
    os.environ[CONFIG_ENV] = config.to_environment()
    metrics_dir = home / "serving" / "metrics" / f"{args.model}-{port}"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    if workers > 1:  # one process counts in memory; several add up their files (prometheus multiprocess mode)
        metrics_dir.mkdir(parents=True, mode=0o700)
        os.environ[MULTIPROC_ENV] = str(metrics_dir)
    server = Server(
        "ml_platform.serving.app:from_environment",
        factory=True,
        address=args.host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        websockets=False,
        http1_settings=HTTP1Settings(
            header_read_timeout=int(limits.header_timeout.total_seconds() * 1000), max_buffer_size=limits.header_bytes
        ),
        log_level=LogLevels.warning,
        respawn_failed_workers=True,
        respawn_interval=0.5,
        ssl_cert=Path(args.ssl_certfile) if args.ssl_certfile else None,
        ssl_key=Path(args.ssl_keyfile) if args.ssl_keyfile else None,
    )
    record_endpoint(
        home,
        args.model,
        args.host,
        port,  # for `ml-platform endpoints` and `ml-platform stop`
        scheme="https" if args.ssl_certfile else "http",
    )
    try:
        server.serve()
    finally:
        forget_endpoint(home, args.model, port)
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
