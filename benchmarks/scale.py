"""One retraining at 1M, 3M and 10M rows per window, with `training.engine: local` against `dask`: wall time,
memory, holdout AUC.

For each size, once: `benchmarks/scale_data.py` writes replicated 2013 flights (daily Parquet files) and the
`flight_delay_scale` spec, and the `<name>_data` job materializes raw → features for every day of the covered
retraining partition's window in one run (the setup, timed on its own line, shared by both engines). Then per
engine, ONE `<name>_retrain` run (training_set → model → evaluation → champion) of that partition in a fresh
Python process (this script's hidden `--one` mode) against the same stored features and Dagster instance, with a
copy of the spec whose `training.engine` is that engine and an MLflow store of its own (so no run is a no-op
retrain of another). With `dask`, the run starts its own `distributed.LocalCluster` (one single-threaded
worker process per core; ML_PLATFORM_DASK_WORKERS / ML_PLATFORM_DASK_MEMORY_LIMIT / ML_PLATFORM_DASK_ADDRESS
are passed through) inside the run, so the cluster's start-up is part of the measured time.

While a run's process lives, this process samples every 0.1 s with psutil the RSS of the run's process (where
every step executes: `execute_in_process`) and the summed RSS of it and all its descendants (Dask nannies and
workers; a fork caught before its exec is left out, as it shows its parent's pages); the peaks are reported
(`step_process_peak_mb`, `total_peak_mb`; the kernel's own peak of the run's process is
`step_process_maxrss_mb`). Summed RSS counts shared pages (libraries) once per process, so every worker's
Python, pandas and LightGBM count. The run's process reports its wall time (the retrain job only, not imports
or loading the definitions; `process_s` is the whole process), the evaluation's holdout AUC and the model's
rounds, read from the Dagster instance's materializations, and whether every gate passed (the scale spec's
gates are permissive; a failed gate is reported, the timing still counts). `loadavg_1m` (before and after a
run, the run included) shows whether other work shared the machine: LightGBM's OpenMP threads slow down badly
when another process takes a core, so time only on a quiet machine. `--repeats N` retrains N times per size on
the dask engine, each in a fresh process and cluster, to show its model is the same run after run (the local
engine's is byte-deterministic and runs once); `auc_dask_vs_local` then takes the worst of the dask runs.

    python benchmarks/scale.py                            # 1M, 3M, 10M rows; local and dask
    python benchmarks/scale.py --quick                    # 200k and 400k rows (--rows 200000,400000)
    python benchmarks/scale.py --rows 1000000 --engines dask [--repeats 3] [--workdir DIR] [--keep] [--max-total-mb N]

Prints JSON lines: per size {"step": "setup", ...}, per (size, engine) {"step": "retrain", "engine", "rows",
"wall_s", "step_process_peak_mb", "total_peak_mb", "roc_auc", "rounds", "gates_passed", ...} or, when a run
failed or was killed, {"step": "retrain", ..., "stopped": true, "exit_code", "signal", "reason", "last_lines"}
(an engine that stopped at one size is not tried at larger sizes); then the figures: per engine
{"figure": "time_exponent", ...} (least-squares slope of log wall against log rows over the sizes that
finished; goal at most 1), per size {"figure": "auc_dask_vs_local", ...} (dask's holdout AUC against local's;
goal: |gap| at most 0.005), {"figure": "dask_step_process_peak_mb", ...} (the step process's peak at the
largest size against the smallest: goal, growing no faster than the rows) and last {"figure":
"dask_10m_peak_rss_ratio", ...}: total peak dask against total peak local at 10M (or the largest size both
engines finished, named in "rows"), goal 1.5. Figures are in the contract's form (benchmarks/contract.py: value,
peer, peer_value, ratio, better); a figure that cannot be computed (an engine stopped) is a step line instead.
The data is pinned: replicated 2013 flights on the 2013 calendar, a fixed seed.

Runs are children started in a session of their own with oom_score_adj 1000, so the kernel's OOM killer takes
them first; `--max-total-mb` kills a run whose summed RSS passes a bound.

It takes long. Measured on a quiet 2-core / 23 GB machine: the quick form 2 minutes; `--rows 1000000` 100 s
(data generation 7 s, the setup's data run 12 s, local retrain 36 s, dask retrain 31 s, plus each process's
imports and the cleanup). The data parts grow about linearly with the rows, the retrains by their exponents:
plan for half an hour or more for the full 1M/3M/10M run, on a quiet machine (another process on the cores
made the same local retrain 3x to 20x slower).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from contract import figure, quick_option

REPO = Path(__file__).resolve().parents[1]
SAMPLE_S = 0.1
STAGES = ("training_set", "model", "evaluation", "champion")
MB = 2**20


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def maxrss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KB on Linux


# --- the child process: one setup or one retrain -------------------------------------------------------------------


def _first_to_die() -> None:
    """Make this process (and what it starts) the OOM killer's first choice, not the machine's other work."""
    with contextlib.suppress(OSError):
        Path("/proc/self/oom_score_adj").write_text("1000")


def _failures(result) -> list[str]:
    """Each failed step with its error and traceback."""
    out = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error = event.event_specific_data.error
            out.append(f"{event.step_key}: {error.to_string() if error else event.message}")
    return out


def _steps(result) -> dict[str, float]:
    return {
        e.step_key.split("__")[-1]: round(e.event_specific_data.duration_ms / 1000, 2)
        for e in result.all_events
        if e.event_type_value == "STEP_SUCCESS"
    }


def one_setup(config: dict) -> dict:
    """Generate the data set, then materialize raw → features for every day of the covered window in one run."""
    started = time.perf_counter()
    sys.path.insert(0, str(REPO / "benchmarks"))
    import scale_data

    summary = scale_data.run(Path(config["data"]), config["rows"], config["window_days"])
    generated = time.perf_counter()
    import dagster as dg

    from ml_platform.defs import build_definitions
    from ml_platform.spec import load_spec

    spec = load_spec(summary["spec"])
    key, first, end = scale_data.retraining_window(spec)
    last = end - timedelta(days=1)
    defs = build_definitions([spec])
    instance = dg.DagsterInstance.local_temp(config["dagster_home"])
    job = defs.resolve_job_def(f"{spec.name}_data")
    run_started = time.perf_counter()
    result = job.execute_in_process(
        instance=instance,
        raise_on_error=False,
        tags={
            "dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat(),
        },
    )
    run_s = time.perf_counter() - run_started
    materialized: dict[str, int] = {}
    for event in result.get_asset_materialization_events():
        stage = event.asset_key.path[-1] if event.asset_key else "?"
        materialized[stage] = materialized.get(stage, 0) + 1
    instance.dispose()
    return {
        "success": result.success,
        "spec": summary["spec"],
        "partition": key,
        "window": f"{first} → {last}",
        "days": (end - first).days,
        "rows_per_window": summary["rows_per_window"],
        "rows_written": summary["rows_written"],
        "replicas": summary["replicas"],
        "generate_s": round(generated - started, 2),
        "data_run_s": round(run_s, 2),
        "materialized": materialized,
        "step_s": _steps(result),
        "failures": _failures(result),
        "maxrss_mb": maxrss_mb(),
    }


def one_retrain(config: dict) -> dict:
    """One retrain of the partition with this engine's spec, and what it produced."""
    import dagster as dg

    from ml_platform.core import mlflow_store
    from ml_platform.defs import build_definitions
    from ml_platform.spec import load_spec

    spec = load_spec(config["spec"])
    defs = build_definitions([spec])
    instance = dg.DagsterInstance.local_temp(config["dagster_home"])
    job = defs.resolve_job_def(f"{spec.name}_retrain")
    started = time.perf_counter()
    result = job.execute_in_process(instance=instance, partition_key=config["partition"], raise_on_error=False)
    wall = time.perf_counter() - started

    def metadata(stage: str) -> dict:
        """The stage's materialization of this run, as the instance recorded it."""
        event = instance.get_latest_materialization_event(dg.AssetKey([spec.name, stage]))
        if event is None or event.run_id != result.run_id:
            return {}
        materialization = event.asset_materialization
        return {k: v.value for k, v in materialization.metadata.items()} if materialization else {}

    training, model, evaluation, champion = (metadata(stage) for stage in STAGES)
    gates = {e.check_name: bool(e.passed) for e in result.get_asset_check_evaluations()}
    fit_rounds = None
    if model.get("mlflow_run_id"):
        params = mlflow_store.client_for().get_run(model["mlflow_run_id"]).data.params
        fit_rounds = int(params["fit_rounds"]) if params.get("fit_rounds") else None
    auc = evaluation.get("roc_auc", evaluation.get("test_roc_auc"))
    instance.dispose()
    return {
        "success": result.success,
        "wall_s": round(wall, 2),
        "engine": spec.training.engine,
        "roc_auc": auc,
        "test_roc_auc": evaluation.get("test_roc_auc"),
        "best_iteration": model.get("best_iteration"),
        "fit_rounds": fit_rounds,
        "noop": model.get("noop"),
        "registered_version": model.get("registered_version"),
        "train_seconds": model.get("train_seconds"),
        "model_timings": model.get("timings"),
        "evaluation_timings": evaluation.get("timings"),
        "training_rows": {
            k: training.get(k) for k in ("rows", "rows_train", "rows_valid", "rows_test", "upstream_partitions")
        },
        "dask_workers": training.get("dask_workers"),
        "gates": gates,
        "gates_passed": bool(gates) and all(gates.values()),
        "champion_action": champion.get("action"),
        "step_s": _steps(result),
        "failures": _failures(result),
        "maxrss_mb": maxrss_mb(),
    }


def one(config_path: str) -> int:
    _first_to_die()
    config = json.loads(Path(config_path).read_text())
    report = one_setup(config) if config["mode"] == "setup" else one_retrain(config)
    Path(config["result"]).write_text(json.dumps(report, default=str))
    return 0 if report["success"] else 1


# --- the parent: start a child, sample its memory ------------------------------------------------------------------


def _sample(process) -> tuple[int, int, int]:
    """(RSS of the process, RSS of it and its descendants, RSS left out): a descendant whose command line is
    its parent's is a fork that has not yet exec'd (Dagster's `tail -F` compute-log watchers, each Dask
    worker's spawn, are started by fork + exec): for that instant it shows its parent's whole RSS, pages the
    two share, so it is left out rather than counted twice."""
    import psutil

    gone = (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess)
    try:
        own = process.memory_info().rss
        descendants = process.children(recursive=True)
    except gone:
        return 0, 0, 0
    commands = {process.pid: _cmdline(process)}
    total, left_out = own, 0
    for descendant in descendants:
        try:
            rss, command, parent = descendant.memory_info().rss, _cmdline(descendant), descendant.ppid()
        except gone:
            continue
        commands[descendant.pid] = command
        if command and command == commands.get(parent):
            left_out += rss
        else:
            total += rss
    return own, total, left_out


def _cmdline(process) -> tuple[str, ...]:
    import psutil

    try:
        return tuple(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return ()


def measured(config: dict, env: dict, log: Path, max_total_mb: float | None) -> dict:
    """Run one child to its end while sampling its memory; what it reported, the peaks and how it ended."""
    import psutil

    config_path = Path(config["result"]).with_suffix(".config.json")
    config_path.write_text(json.dumps(config))
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with log.open("w") as out:
        child = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--one", str(config_path)],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    own_peak = total_peak = fork_peak = 0
    over = None
    try:
        process = psutil.Process(child.pid)
        while child.poll() is None:
            own, total, left_out = _sample(process)
            own_peak, total_peak, fork_peak = max(own_peak, own), max(total_peak, total), max(fork_peak, left_out)
            if max_total_mb and total > max_total_mb * MB and over is None:
                over = f"summed RSS {total / MB:.0f} MB passed --max-total-mb {max_total_mb:g}"
                os.killpg(child.pid, signal.SIGKILL)
            time.sleep(SAMPLE_S)
    except BaseException:
        _kill_group(child)
        raise
    elapsed = time.perf_counter() - started
    _kill_group(child)  # leftovers of the session (a worker the child did not wait for)
    result = Path(config["result"])
    report = json.loads(result.read_text()) if result.exists() else None
    return {
        "report": report,
        "exit_code": child.returncode,
        "process_s": round(elapsed, 2),
        "own_peak_mb": round(own_peak / MB, 1),
        "total_peak_mb": round(total_peak / MB, 1),
        "killed_by": over,
        "unexeced_fork_peak_mb": round(fork_peak / MB, 1),
        "loadavg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def _kill_group(child: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def _tail(log: Path, lines: int = 12) -> list[str]:
    """The last lines of a child's output that look like an error (else simply the last lines)."""
    text = log.read_text(errors="replace").splitlines() if log.exists() else []
    markers = ("Error", "error", "Traceback", "Killed", "MemoryError", "Exception", "failed", "Failure")
    chosen = [line for line in text if any(m in line for m in markers)]
    return [line[:400] for line in (chosen or text)[-lines:]]


def stopped(run: dict, log: Path) -> dict:
    """Why a child did not finish: its exit code or signal, and the last error lines."""
    code = run["exit_code"]
    signal_name = signal.Signals(-code).name if code is not None and code < 0 else None
    report = run["report"] or {}
    if run["killed_by"]:
        reason = run["killed_by"]
    elif signal_name == "SIGKILL":
        reason = "killed (SIGKILL: most likely the kernel's OOM killer; see dmesg)"
    elif signal_name:
        reason = f"ended by {signal_name}"
    elif report.get("failures"):
        reason = "the run failed: " + report["failures"][0].splitlines()[0][:300]
    else:
        reason = f"exited with {code} before reporting"
    last = [line[:400] for failure in report.get("failures", []) for line in failure.splitlines()[-8:]]
    return {
        "exit_code": code,
        "signal": signal_name,
        "reason": reason,
        "last_lines": last or _tail(log, 6),
        "log": str(log),
    }


def kept_log(log: Path, name: str, keep: bool) -> Path:
    """A stopped run's log, copied out of the size's scratch folder (which is removed) unless it is kept."""
    if keep or not log.exists():
        return log
    kept = Path(tempfile.gettempdir()) / name
    shutil.copyfile(log, kept)
    return kept


def spec_for(engine: str, spec: Path, folder: Path) -> Path:
    """A copy of the scale spec with `training.engine` set."""
    import yaml

    data = yaml.safe_load(spec.read_text())
    data["training"]["engine"] = engine
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / spec.name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of log(y) against log(x)."""
    if len(points) < 2:
        return None
    xs, ys = [math.log(x) for x, _ in points], [math.log(y) for _, y in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=False)) / var if var else None


def base_env(scratch: Path) -> dict:
    env = {
        **os.environ,
        "ML_PLATFORM_HOME": str(scratch / "home"),
        "PYTHONWARNINGS": "ignore",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    for variable in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_REGISTRY_URI",
        "ML_PLATFORM_MLFLOW_ARTIFACTS",
        "ML_PLATFORM_STORAGE",
        "DAGSTER_HOME",
    ):
        env.pop(variable, None)
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="1000000,3000000,10000000", help="rows per training window, comma list")
    quick_option(parser, "200k and 400k rows per window (minutes)")
    parser.add_argument("--engines", default="local,dask", help="training.engine values, comma list")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="retrains per size on the dask engine, each in a fresh cluster (the local engine is byte-deterministic)",
    )
    parser.add_argument("--window-days", type=int, default=56)
    parser.add_argument("--workdir", type=Path, default=None, help="where the temporary data goes (default: $TMPDIR)")
    parser.add_argument("--keep", action="store_true", help="keep each size's data, stores and logs")
    parser.add_argument(
        "--max-total-mb",
        type=float,
        default=None,
        help="kill a run whose summed RSS passes this many MB (reported as stopped)",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child mode: a config file
    args = parser.parse_args(argv)
    if args.one:
        return one(args.one)
    if importlib.util.find_spec("psutil") is None:
        parser.error("psutil samples the runs' memory: install it (dask[distributed] brings it)")

    if args.quick:
        args.rows = "200000,400000"
    sizes = [int(value) for value in args.rows.split(",") if value.strip()]
    engines = [value.strip() for value in args.engines.split(",") if value.strip()]
    results: dict[str, dict[int, dict]] = {engine: {} for engine in engines}
    aucs: dict[str, dict[int, list[float]]] = {engine: {} for engine in engines}  # every run's holdout AUC
    gave_up: dict[str, int] = {}
    began = time.perf_counter()
    for rows in sizes:
        scratch = Path(tempfile.mkdtemp(prefix=f"ml_platform_scale_{rows}_", dir=args.workdir))
        try:
            env, dagster_home = base_env(scratch), scratch / "dagster_home"
            dagster_home.mkdir()
            setup = measured(
                {
                    "mode": "setup",
                    "rows": rows,
                    "window_days": args.window_days,
                    "data": str(scratch / "data"),
                    "dagster_home": str(dagster_home),
                    "result": str(scratch / "setup.json"),
                },
                env,
                scratch / "setup.log",
                None,
            )
            report = setup["report"]
            if not report or not report["success"]:
                log = kept_log(scratch / "setup.log", f"ml_platform_scale_{rows}_setup.log", args.keep)
                emit(step="setup", rows_requested=rows, success=False, **stopped(setup, log))
                continue
            window_rows = report["rows_per_window"]
            emit(
                step="setup",
                rows=window_rows,
                rows_requested=rows,
                partition=report["partition"],
                window=report["window"],
                days=report["days"],
                replicas=report["replicas"],
                rows_written=report["rows_written"],
                generate_s=report["generate_s"],
                data_run_s=report["data_run_s"],
                materialized=report["materialized"],
                peak_mb=setup["total_peak_mb"],
                process_s=setup["process_s"],
                loadavg_1m=setup["loadavg_1m"],
            )
            for engine, attempt in [(e, a) for e in engines for a in range(args.repeats if e == "dask" else 1)]:
                if engine in gave_up:
                    emit(
                        step="retrain",
                        engine=engine,
                        rows=window_rows,
                        skipped=True,
                        reason=f"stopped at {gave_up[engine]} rows",
                    )
                    continue
                store = scratch / f"mlflow_{engine}_{attempt}"
                store.mkdir()
                run_env = {
                    **env,
                    "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}",
                    "ML_PLATFORM_MLFLOW_ARTIFACTS": (store / "artifacts").as_uri(),
                }
                log = scratch / f"retrain_{engine}_{attempt}.log"
                run = measured(
                    {
                        "mode": "retrain",
                        "spec": str(spec_for(engine, Path(report["spec"]), scratch / f"spec_{engine}")),
                        "partition": report["partition"],
                        "dagster_home": str(dagster_home),
                        "result": str(scratch / f"retrain_{engine}_{attempt}.json"),
                    },
                    run_env,
                    log,
                    args.max_total_mb,
                )
                done = run["report"]
                if not done or not done["success"] or run["exit_code"] != 0:
                    gave_up[engine] = window_rows
                    emit(
                        step="retrain",
                        engine=engine,
                        rows=window_rows,
                        stopped=True,
                        step_process_peak_mb=run["own_peak_mb"],
                        total_peak_mb=run["total_peak_mb"],
                        process_s=run["process_s"],
                        **stopped(run, kept_log(log, f"ml_platform_scale_{rows}_{engine}.log", args.keep)),
                    )
                    continue
                line = {
                    "step": "retrain",
                    "engine": engine,
                    "run": attempt + 1,
                    "rows": window_rows,
                    "wall_s": done["wall_s"],
                    "step_process_peak_mb": run["own_peak_mb"],
                    "total_peak_mb": run["total_peak_mb"],
                    "roc_auc": done["roc_auc"],
                    "rounds": done["best_iteration"],
                    "gates_passed": done["gates_passed"],
                    **(
                        {"failed_gates": [g for g, ok in done["gates"].items() if not ok]}
                        if not done["gates_passed"]
                        else {}
                    ),
                    "fit_rounds": done["fit_rounds"],
                    "step_process_maxrss_mb": done["maxrss_mb"],
                    "process_s": run["process_s"],
                    "step_s": done["step_s"],
                    "train_seconds": done["train_seconds"],
                    "training_rows": done["training_rows"],
                    "dask_workers": done["dask_workers"],
                    "champion_action": done["champion_action"],
                    "noop": done["noop"],
                    "loadavg_1m": run["loadavg_1m"],
                    "unexeced_fork_peak_mb": run["unexeced_fork_peak_mb"],
                }
                results[engine].setdefault(window_rows, line)  # the sizes' time figures: each engine's first run
                aucs[engine].setdefault(window_rows, []).append(done["roc_auc"])
                emit(**line)
        finally:
            if args.keep:
                print(f"kept {scratch}", file=sys.stderr)
            else:
                shutil.rmtree(scratch, ignore_errors=True)

    for engine in engines:
        finished = sorted(results[engine].items())
        value = slope([(rows, line["wall_s"]) for rows, line in finished])
        sizes, walls = [rows for rows, _ in finished], [line["wall_s"] for _, line in finished]
        if value is None:
            emit(step="time_exponent", engine=engine, note="fewer than two sizes finished", sizes=sizes, wall_s=walls)
            continue
        figure(
            "time_exponent",
            case=engine,
            value=value,
            unit="slope of log wall against log rows",
            peer="linear scaling (exponent 1)",
            peer_value=1.0,
            better="lower",
            goal=1.0,
            engine=engine,
            sizes=sizes,
            wall_s=walls,
        )
    local, dask = results.get("local", {}), results.get("dask", {})
    both = sorted(set(local) & set(dask))
    for rows in both:
        gap = max(abs(auc - local[rows]["roc_auc"]) for auc in aucs["dask"][rows])  # the worst of the dask runs
        figure(
            "auc_dask_vs_local",
            case=str(rows),
            value=dask[rows]["roc_auc"],
            unit="roc_auc",
            peer="training.engine local, the same rows",
            peer_value=local[rows]["roc_auc"],
            better="higher",
            goal="|gap| at most 0.005",
            met=bool(gap <= 0.005),
            gap=round(gap, 5),
            rows=rows,
            dask_runs=aucs["dask"][rows],
        )
    if len(dask) > 1:
        peaks = {rows: line["step_process_peak_mb"] for rows, line in sorted(dask.items())}
        smallest, largest = min(peaks), max(peaks)
        figure(
            "dask_step_process_peak_mb",
            value=peaks[largest],
            unit="MB",
            peer=f"the same at the smallest size ({smallest} rows)",
            peer_value=peaks[smallest],
            better="lower",
            goal="growing no faster than the rows",
            met=bool(peaks[largest] / peaks[smallest] <= largest / smallest),
            by_rows={str(k): v for k, v in peaks.items()},
            rows_growth=round(largest / smallest, 3),
        )
    target = 10_000_000
    at = next((rows for rows in both if rows >= target), both[-1] if both else None)
    if at is None:
        emit(
            step="dask_10m_peak_rss_ratio",
            note="no size finished with both engines",
            total_s=round(time.perf_counter() - began, 1),
        )
    else:
        figure(
            "dask_10m_peak_rss_ratio",
            value=dask[at]["total_peak_mb"],
            unit="MB",
            peer="training.engine local, the same rows (summed RSS of the run and its descendants)",
            peer_value=local[at]["total_peak_mb"],
            better="lower",
            goal=1.5,
            rows=at,
            note=None if at >= target else "10M rows not run: the largest size both engines finished",
            total_s=round(time.perf_counter() - began, 1),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
