"""Retraining `flight_delay` through the platform against a plain LightGBM script, in one run.

(a) holdout ROC AUC of the platform's model against a plain script trained on the same window, split, parameters
    and early-stopping rule (the log loss alone, `first_metric_only`) (goal: no worse than 0.005 below);
(b) warm, in process (imports done, one untimed run first): one retraining through Dagster (training_set →
    model → evaluation → champion for one partition, with MLflow logging, registry, plots and model card)
    against the plain script (read the window's feature files, train, score the holdout), alternating, median
    of several repeats: the ratio (`retrain_overhead_ratio`), each part of the platform's run (Dagster's run
    and step overhead, reading inputs, writing outputs, assembling the window, training, SHAP, plots, model
    card, MLflow logging, registration, promotion) and the platform's time above the plain script
    (`retrain_fixed_cost_s`, goal at most 1.0 s);
(c) last line: a retraining launched the way the UI launches it: submitted to `dagster-webserver`, whose code
    server starts the run in a fresh (spawned) Python that loads the code location and runs the steps with
    the job's executor, timed until the run has succeeded (the champion moved); `dagster asset materialize
    --select <the four stages> --partition <week>` (the implicit asset job, what the UI's "Materialize"
    button runs) and `dagster job execute -j flight_delay_retrain` from a terminal are timed beside it; against the plain script as a fresh process (imports, reads the window's Parquet
    files, trains, scores, exits), alternating, median of the repeats (`retrain_launch_ratio`, goal at most 2x).

The data is pinned: the spec's replay offset is fixed (`contract.REPLAY_OFFSET_WEEKS`: the 2013 calendar itself),
and every platform retrain alternates between the weeks of 2013-06-18 and 2013-06-25 (windows 2013-04-30 →
2013-06-24 and 2013-05-07 → 2013-07-01, holdout ROC AUC about 0.76 and 0.77, above the bundled gate's 0.65), so
none is a no-op (a retrain whose data, spec and code equal the newest registered version's trains nothing);
`gates.max_regression` is opened so that every retrain moves the champion (this measures speed, not model
quality). Parts are measured by wrapping the functions the steps call (the IO manager, the local engine's
`build_training_set`, `train_and_log`, `Registry.register`) and from the `timings` the evaluation step records in
its metadata.

    python benchmarks/training.py [--quick] [--repeats 3]

`--quick` (the guard's form): a 28-day window (the same two weeks' last 28 days), one repeat, and of (c) the UI
launch against the plain process alone (no CLI launches); the same figures.

Prints JSON lines, figures in the contract's form (benchmarks/contract.py): `holdout_auc_vs_plain`,
`retrain_overhead_ratio`, `retrain_fixed_cost_s` (a difference: not guarded) and last `retrain_launch_ratio`.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from contract import REPLAY_OFFSET_WEEKS, figure, quick_option

REPO = Path(__file__).resolve().parents[1]
STAGES = ("training_set", "model", "evaluation", "champion")
#: The retraining partitions the benchmark alternates between (on the 2013 calendar: REPLAY_OFFSET_WEEKS = 0).
WEEKS = ("2013-06-18", "2013-06-25")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def graphql_client(port: int, process: subprocess.Popen, timeout: float = 180):
    """A GraphQL client once the webserver answers and has loaded the code location."""
    from dagster_graphql import DagsterGraphQLClient

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"dagster-webserver exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                client = DagsterGraphQLClient("127.0.0.1", port_number=port)
                client._execute("{ workspaceOrError { __typename } }")
                return client
        except Exception:  # not up yet
            time.sleep(0.5)
    raise SystemExit(f"dagster-webserver did not answer on port {port} in {timeout} s")


def stop_group(process: subprocess.Popen) -> None:
    """End a process and everything it started (the webserver's code server and run processes)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


# What a data scientist would write by hand: pandas categoricals, LightGBM, the same split and params; refit on
# train + validation days with the early-stopped number of rounds when the spec refits. Run in process (warm)
# and as a script of its own (whole process), so it imports nothing from the platform.
PLAIN_SCRIPT = textwrap.dedent("""
    import json
    import sys

    import lightgbm as lgb
    import pandas as pd
    from sklearn.metrics import roc_auc_score


    def plain(files, setup):
        frame = pd.concat([pd.read_parquet(path) for path in files], ignore_index=True)
        day = frame[setup["timestamp"]].dt.normalize()
        unique = sorted(day.unique())
        test_start = unique[-setup["test_days"]]
        valid_start = unique[-(setup["test_days"] + setup["validation_days"])]
        features, categorical, target = setup["features"], setup["categorical"], setup["target"]
        for column in categorical:
            frame[column] = frame[column].astype("category")
        train, valid = frame[day < valid_start], frame[(day >= valid_start) & (day < test_start)]
        test = frame[day >= test_start]
        params = {"objective": "binary", "metric": ["binary_logloss", "auc"], "seed": setup["seed"],
                  "verbosity": -1, "num_threads": 2, **setup["params"]}
        booster = lgb.train(params, lgb.Dataset(train[features], train[target], categorical_feature=categorical),
                            num_boost_round=setup["num_boost_round"],
                            valid_sets=[lgb.Dataset(valid[features], valid[target], categorical_feature=categorical)],
                            callbacks=[lgb.early_stopping(setup["early_stopping_rounds"], first_metric_only=True,
                                                          verbose=False)])
        if setup["refit"]:
            seen = frame[day < test_start]
            booster = lgb.train(params, lgb.Dataset(seen[features], seen[target], categorical_feature=categorical),
                                num_boost_round=max(booster.best_iteration, 1))
        return float(roc_auc_score(test[target], booster.predict(test[features])))


    if __name__ == "__main__":
        setup = json.loads(open(sys.argv[1]).read())
        print(plain(sys.argv[2:], setup))
""")


def plain_setup(spec) -> dict:
    return {
        "timestamp": spec.timestamp,
        "target": spec.target.name,
        "features": spec.features.names,
        "categorical": spec.features.all_categorical,
        "test_days": spec.training.test_days,
        "validation_days": spec.training.validation_days,
        "seed": spec.training.seed,
        "params": dict(spec.training.params),
        "num_boost_round": spec.training.num_boost_round,
        "early_stopping_rounds": spec.training.early_stopping_rounds,
        "refit": bool(getattr(spec.training, "refit", False)),
    }


class Parts:
    """Seconds spent in each part of the platform's retrain, recorded by wrapping the functions steps call."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = collections.defaultdict(float)

    def wrap(self, owner, name: str, part: str, inner_timings: bool = False) -> None:
        original = getattr(owner, name)
        parts = self

        @functools.wraps(original)
        def timed(*args, **kwargs):
            started = time.perf_counter()
            result = original(*args, **kwargs)
            elapsed = time.perf_counter() - started
            inner = getattr(result, "timings", None) if inner_timings else None
            if inner:
                for key, value in inner.items():
                    parts.seconds[f"{part}.{key}"] += value
                elapsed -= sum(inner.values())
                if elapsed > 0:
                    parts.seconds[f"{part}.other"] += elapsed
            else:
                parts.seconds[part] += elapsed
            return result

        setattr(owner, name, timed)

    def take(self) -> dict[str, float]:
        taken, self.seconds = dict(self.seconds), collections.defaultdict(float)
        return taken


def instrument() -> Parts:
    from ml_platform.core import training_run
    from ml_platform.core.engine import LocalEngine
    from ml_platform.core.registry import Registry
    from ml_platform.defs import io_manager

    parts = Parts()
    parts.wrap(io_manager.PartitionedParquetIOManager, "load_input", "reading_inputs")
    parts.wrap(io_manager.PartitionedParquetIOManager, "handle_output", "writing_outputs")
    # the steps import these from core when they run (the code location does not import training)
    parts.wrap(LocalEngine, "build_training_set", "training_set.assemble_window")
    parts.wrap(training_run, "train_and_log", "model", inner_timings=True)
    parts.wrap(Registry, "register", "model.registration")
    return parts


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    quick_option(parser, "a 28-day window, one repeat, the UI launch without the CLI launches")
    args = parser.parse_args()
    if args.quick:
        args.repeats = 1
    with tempfile.TemporaryDirectory(prefix="ml_platform_training_") as folder:
        scratch = Path(folder)
        home, dagster_home = scratch / "home", scratch / "dagster"
        os.environ["ML_PLATFORM_HOME"] = str(home)
        dagster_home.mkdir()
        shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
        import dagster as dg
        import yaml

        from ml_platform.defs import build_definitions
        from ml_platform.spec import BUNDLED_SPECS, load_spec

        data = yaml.safe_load((BUNDLED_SPECS / "flight_delay.yaml").read_text())
        data["source"]["offset_weeks"] = weeks = REPLAY_OFFSET_WEEKS
        if args.quick:
            data["training"]["window_days"] = 28
        gates = data.setdefault("gates", {})
        gates["max_regression"] = 1.0  # every retrain moves the champion
        if gates.get("fairness"):
            gates["fairness"]["max_gap"] = 1.0
        spec_file = scratch / "specs" / "flight_delay.yaml"
        spec_file.parent.mkdir()
        spec_file.write_text(yaml.safe_dump(data))
        spec = load_spec(spec_file)
        defs = build_definitions([spec])
        partitions = defs.resolve_assets_def(dg.AssetKey(["flight_delay", "model"])).partitions_def
        assert partitions is not None
        shift = timedelta(weeks=weeks)
        weeks_used = [(date.fromisoformat(week) + shift).isoformat() for week in WEEKS]
        assert set(weeks_used) <= set(partitions.get_partition_keys()), weeks_used
        turn = iter(range(10**6))

        def next_week() -> str:
            """The other week than the previous retrain's: the newest version never has the same inputs."""
            return weeks_used[next(turn) % 2]

        def window(partition: str) -> list[str]:
            first = date.fromisoformat(partition) + timedelta(days=7 - spec.training.window_days)
            return [(first + timedelta(days=i)).isoformat() for i in range(spec.training.window_days)]

        days = sorted({day for week in weeks_used for day in window(week)})
        instance = dg.DagsterInstance.from_config(str(dagster_home))
        data_run = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey(["flight_delay", "raw"]), dg.AssetKey(["flight_delay", "features"])],
            tags={"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]},
        )
        assert data_run.success
        emit(step="setup", weeks=weeks_used, days=f"{days[0]} → {days[-1]}", offset_weeks=weeks)

        storage = home / "storage" / "flight_delay" / "features"
        setup = plain_setup(spec)
        (scratch / "plain_setup.json").write_text(json.dumps(setup))
        (scratch / "plain_script.py").write_text(PLAIN_SCRIPT)
        namespace: dict = {}
        exec(compile(PLAIN_SCRIPT, "plain_script.py", "exec"), namespace)

        def files(partition: str) -> list[str]:
            return [str(storage / f"{day}.parquet") for day in window(partition)]

        def plain_script(partition: str) -> float:
            return namespace["plain"](files(partition), setup)

        retrain = defs.resolve_job_def("flight_delay_retrain")
        parts = instrument()

        def platform_run(partition: str) -> dict:
            parts.take()
            started = time.perf_counter()
            result = retrain.execute_in_process(instance=instance, partition_key=partition, raise_on_error=False)
            wall = time.perf_counter() - started
            metadata: dict[str, Any] = {}
            for event in result.get_asset_materialization_events():
                asset = event.asset_key.path[-1] if event.asset_key else "?"
                metadata.update({f"{asset}.{k}": v.value for k, v in event.materialization.metadata.items()})
            steps = {
                str(e.step_key).split("__")[-1]: e.step_success_data.duration_ms / 1000
                for e in result.all_events
                if e.event_type_value == "STEP_SUCCESS"
            }
            measured = parts.take()
            breakdown = {
                **measured,
                **{f"evaluation.{k}": v for k, v in (metadata.get("evaluation.timings") or {}).items()},
            }
            inside = sum(breakdown.values())
            breakdown["dagster_run_overhead"] = wall - sum(steps.values())
            breakdown["dagster_step_overhead"] = sum(steps.values()) - inside  # compute-function framework,
            # events and metadata; also what the wrapped functions do not cover (the champion step's alias
            # moves, the model step's no-op check), so the parts add up to the run's wall time
            return {
                "success": result.success,
                "auc": metadata.get("evaluation.test_roc_auc"),
                "wall": wall,
                "steps": steps,
                "parts": breakdown,
                "moved": metadata.get("champion.action") == "promote",
                "gates": {e.check_name: e.passed for e in result.get_asset_check_evaluations()},
            }

        warm = platform_run(next_week())  # imports, MLflow store migrations, first registered model
        assert warm["success"], warm
        plain_script(weeks_used[0])
        platform_times, plain_times, runs = [], [], []
        for _ in range(args.repeats):
            partition = next_week()
            runs.append(platform_run(partition))
            platform_times.append(runs[-1]["wall"])
            started = time.perf_counter()
            plain_auc = plain_script(partition)
            plain_times.append(time.perf_counter() - started)
        platform_auc = runs[-1]["auc"]
        emit(
            step="platform",
            auc=platform_auc,
            seconds=[round(t, 3) for t in platform_times],
            steps={k: round(v, 3) for k, v in runs[-1]["steps"].items()},
            gates=runs[-1]["gates"],
            success=all(r["success"] and r["moved"] for r in runs),
        )
        emit(step="plain_script", auc=plain_auc, seconds=[round(t, 3) for t in plain_times])
        auc_gap = plain_auc - platform_auc  # the same (last) week on both sides
        figure(
            "holdout_auc_vs_plain",
            value=platform_auc,
            unit="roc_auc",
            peer="plain LightGBM script, the same window, split and parameters",
            peer_value=plain_auc,
            better="higher",
            goal="gap (plain - platform) at most 0.005",
            met=bool(auc_gap <= 0.005),
            gap=round(auc_gap, 5),
        )
        platform_s, plain_s = statistics.median(platform_times), statistics.median(plain_times)
        figure(
            "retrain_overhead_ratio",
            value=platform_s,
            unit="s",
            peer="plain LightGBM script in process (read the window, train, score)",
            peer_value=plain_s,
            better="lower",
            goal=2.0,
            repeats=args.repeats,
        )
        names = sorted({name for run in runs for name in run["parts"]})
        medians = {name: round(statistics.median(run["parts"].get(name, 0.0) for run in runs), 3) for name in names}
        emit(
            step="retrain_parts_s",
            parts=dict(sorted(medians.items(), key=lambda item: -item[1])),
            sum=round(sum(medians.values()), 3),
            platform_s=round(platform_s, 3),
            plain_s=round(plain_s, 3),
        )
        fixed = platform_s - plain_s
        figure(
            "retrain_fixed_cost_s",
            value=fixed,
            unit="s",
            peer="plain LightGBM script in process",
            peer_value=plain_s,
            better="lower",
            goal=1.0,
            met=bool(fixed <= 1.0),  # the goal is on the seconds above the plain script
            guarded=False,  # a difference: retrain_overhead_ratio guards the same times
            platform_s=round(platform_s, 3),
        )
        instance.dispose()

        # (c) whole processes, launched as the UI launches a run: a fresh Python that loads the code location.
        env = {
            **os.environ,
            "DAGSTER_HOME": str(dagster_home),
            "ML_PLATFORM_HOME": str(home),
            "ML_PLATFORM_SPECS": str(spec_file.parent),
            "PYTHONWARNINGS": "ignore",
        }
        for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            env.pop(variable, None)  # the platform's default store under ML_PLATFORM_HOME, as in the runs above
        dagster = str(Path(sys.executable).with_name("dagster"))
        selection = ",".join(f"flight_delay/{stage}" for stage in STAGES)

        def champion() -> str | None:
            from ml_platform.core import mlflow_store

            return mlflow_store.version_of_alias(mlflow_store.client_for(), "flight_delay", "champion")

        def launched(command: list[str]) -> float:
            before = champion()
            started = time.perf_counter()
            done = subprocess.run(
                command, env=env, cwd=scratch, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
            )
            elapsed = time.perf_counter() - started
            if done.returncode != 0 or champion() == before:
                raise SystemExit(
                    f"{' '.join(command[:4])} did not move the champion ({before} → {champion()}):\n"
                    f"{done.stderr[-3000:]}"
                )
            return elapsed

        def materialize(partition: str) -> float:
            return launched(
                [
                    dagster,
                    "asset",
                    "materialize",
                    "-m",
                    "ml_platform.definitions",
                    "--select",
                    selection,
                    "--partition",
                    partition,
                ]
            )

        def job_execute(partition: str) -> float:
            return launched(
                [
                    dagster,
                    "job",
                    "execute",
                    "-m",
                    "ml_platform.definitions",
                    "-j",
                    "flight_delay_retrain",
                    "--tags",
                    json.dumps({"dagster/partition": partition}),
                ]
            )

        def plain_process(partition: str) -> float:
            started = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    str(scratch / "plain_script.py"),
                    str(scratch / "plain_setup.json"),
                    *files(partition),
                ],
                env=env,
                cwd=scratch,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            return time.perf_counter() - started

        launches: list[float] = []
        jobs: list[float] = []
        plains: list[float] = []
        for _ in range(0 if args.quick else args.repeats):  # the quick form times the UI's launch alone
            partition = next_week()
            launches.append(materialize(partition))
            plains.append(plain_process(partition))
            jobs.append(job_execute(next_week()))

        # The UI's own path: the webserver asks the code server to launch the run, which starts it in a new
        # (spawned) Python that loads the code location and runs the job's executor. The run coordinator is the
        # direct one here (no daemon, so no queue wait and no sensors or automation competing for the cores).
        settings = yaml.safe_load((dagster_home / "dagster.yaml").read_text())
        settings.pop("run_queue", None)  # the queued coordinator's settings; the direct one has none
        settings["run_coordinator"] = {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"}
        (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(settings))
        port = free_port()
        webserver_log = (scratch / "webserver.log").open("w")
        webserver = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("dagster-webserver")),
                "-w",
                str(REPO / "workspace.yaml"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            env=env,
            cwd=REPO,
            stdout=webserver_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            client = graphql_client(port, webserver)

            def ui_launch(partition: str) -> float:
                before = champion()
                started = time.perf_counter()
                run_id = client.submit_job_execution("flight_delay_retrain", tags={"dagster/partition": partition})
                while (status := client.get_run_status(run_id).value) not in ("SUCCESS", "FAILURE", "CANCELED"):
                    time.sleep(0.05)
                elapsed = time.perf_counter() - started
                if status != "SUCCESS" or champion() == before:
                    raise SystemExit(
                        f"the UI-launched retrain of {partition} ended {status}, champion {before} → {champion()}"
                    )
                return elapsed

            uis, ui_plains = [], []
            for _ in range(args.repeats):
                partition = next_week()
                uis.append(ui_launch(partition))
                ui_plains.append(plain_process(partition))
        except SystemExit:
            print((scratch / "webserver.log").read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            stop_group(webserver)
        plains += ui_plains
        emit(
            step="launched",
            ui_launch_s=[round(t, 3) for t in uis],
            asset_materialize_s=[round(t, 3) for t in launches],
            job_execute_s=[round(t, 3) for t in jobs],
            plain_process_s=[round(t, 3) for t in plains],
            executor="in_process (Definitions default; retrain job)",
            note="ui_launch: submitted through the webserver's GraphQL API, started by the code server in a "
            "spawned Python, timed until the run succeeded (champion moved); the CLI launches are the same "
            "work started from a terminal",
        )
        platform_s, plain_s = statistics.median(uis), statistics.median(plains)
        figure(
            "retrain_launch_ratio",
            value=platform_s,
            unit="s",
            peer="plain LightGBM script as a fresh process (imports, read, train, score)",
            peer_value=plain_s,
            better="lower",
            goal=2.0,
            repeats=args.repeats,
            asset_materialize_ratio=round(statistics.median(launches) / plain_s, 2) if launches else None,
            job_execute_ratio=round(statistics.median(jobs) / plain_s, 2) if jobs else None,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
