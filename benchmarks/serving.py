"""Our endpoint against `mlflow models serve --env-manager local`, same registered model, in one run.

Trains a real flight_delay model (56 replayed days), registers it in a temporary MLflow store as the
`champion`, starts both servers on 127.0.0.1, checks they answer the same row identically, then drives each
with wrk (single-row requests, 8 connections, 10 s). Also compares the batch scorer of the `predictions` asset
with a bare `Booster.predict` on the same rows. Prints JSON lines; the last is
{"figure": "serving_rps_ratio_vs_mlflow", "value": ..., "goal": 10, "met": ...}.

    python benchmarks/serving.py [--seconds 10] [--connections 8] [--only batch]

`--only batch` trains the model and prints only the batch-scoring figure (no servers, no wrk).
Needs wrk (Debian package `wrk`; installed here when missing and running as root).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_wrk() -> str:
    if shutil.which("wrk"):
        return shutil.which("wrk")
    if os.geteuid() == 0:
        subprocess.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk",
                       shell=True, check=True, stdout=subprocess.DEVNULL)
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    return shutil.which("wrk")


def wait_ready(url: str, body: dict, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            response = requests.post(url, json=body, timeout=2)
            if response.status_code == 200:
                return
            last = f"{response.status_code}: {response.text[-1500:]}"
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready in {timeout} s; last answer {last}")


def run_wrk(wrk: str, url: str, body: dict, seconds: int, connections: int, scratch: Path) -> dict:
    script = scratch / "post.lua"
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f"wrk.body = {json.dumps(json.dumps(body))}\n")
    output = subprocess.run([wrk, "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
                            capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)

    def percentile(p: str) -> float:
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", output).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return {"rps": rps, "p50_ms": percentile("50"), "p99_ms": percentile("99"),
            "non_2xx": int(non2xx.group(1)) if non2xx else 0}


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def stored_features(raw, spec):
    """The window's features as the pipeline hands them to training and to the predictions asset: built per
    daily partition, each stored as Parquet, read back and joined (categorical columns stay pandas Categoricals
    under the union of the days' levels)."""
    import io

    import pandas as pd

    from ml_platform.core.features import build_features, concat_partitions

    days = []
    for _, day in raw.groupby(raw[spec.timestamp].dt.normalize(), sort=True):
        buffer = io.BytesIO()
        build_features(day.reset_index(drop=True), spec)[0].to_parquet(buffer, index=False)
        buffer.seek(0)
        days.append(pd.read_parquet(buffer))
    return concat_partitions(days)


def batch_scoring(model, split) -> dict:
    """The predictions asset's scorer (Model.predict on the features frame as stored, categorical features as
    pandas Categoricals) against Booster.predict on the same frame, its categorical columns as pandas categories
    with the training levels (what LightGBM's own pandas path needs), and against a bare ready-made matrix."""
    import numpy as np
    import pandas as pd

    base = split.test.reset_index(drop=True)
    frame = base.loc[base.index.repeat(20)].reset_index(drop=True)  # ~130k rows
    assert all(isinstance(frame[name].dtype, pd.CategoricalDtype) for name in model.encoder.categorical)
    native = frame[model.encoder.names].copy()
    for name in model.encoder.categorical:
        native[name] = pd.Categorical(native[name], categories=model.encoder.levels[name])
    matrix = model.encoder.transform(frame)
    timings = {"scorer": [], "scorer_categorical": [], "booster_frame": [], "booster_matrix": []}
    for _ in range(15):  # alternated rounds, the best of each: steadier when other work shares the cores
        for name, call in (("scorer", lambda: model.predict(frame)),
                           ("scorer_categorical", lambda: model.predict(native)),
                           ("booster_frame", lambda: model.booster.predict(native)),
                           ("booster_matrix", lambda: model.booster.predict(matrix))):
            started = time.perf_counter()
            result = call()
            timings[name].append(time.perf_counter() - started)
            assert np.array_equal(result, model.booster.predict(matrix))
    rate = {name: len(frame) / min(values) for name, values in timings.items()}
    ratio_frame = rate["scorer"] / rate["booster_frame"]
    return dict(figure="batch_scoring_ratio_vs_booster", value=round(ratio_frame, 3), goal=0.8,
                met=bool(ratio_frame >= 0.8), rows=len(frame), rows_per_s={k: round(v) for k, v in rate.items()},
                ratio_vs_bare_matrix=round(rate["scorer"] / rate["booster_matrix"], 3),
                ratio_with_categorical_input=round(rate["scorer_categorical"] / rate["booster_frame"], 3),
                note="peer: Booster.predict on the same frame (categories as pandas categoricals); the bare-matrix "
                     "ratio leaves out all input conversion")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--only", choices=["batch"], default=None,
                        help="run only the batch-scoring comparison (no servers)")
    args = parser.parse_args()
    wrk = ensure_wrk() if args.only is None else None
    with tempfile.TemporaryDirectory(prefix="ml_platform_serving_") as scratch:
        scratch = Path(scratch)
        os.environ["ML_PLATFORM_HOME"] = str(scratch / "home")
        uri = f"sqlite:///{scratch / 'mlflow.db'}"
        os.environ["MLFLOW_TRACKING_URI"] = uri
        os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
        import lightgbm as lgb  # noqa: F401
        import mlflow

        from ml_platform.core.mlflow_store import use_store
        from ml_platform.core.registry import Registry
        from ml_platform.core.sources import nycflights13
        from ml_platform.core.training import split_by_time, train
        from ml_platform.core.training_run import log_model_files
        from ml_platform.spec import BUNDLED_SPECS, load_spec

        spec = load_spec(BUNDLED_SPECS / "flight_delay.yaml")
        raw = nycflights13.load(nycflights13.Replay(0), datetime(2013, 5, 1), datetime(2013, 6, 26))
        features = stored_features(raw, spec)
        split = split_by_time(features, spec)
        model = train(spec, split).model
        if args.only == "batch":
            emit(**batch_scoring(model, split))
            return 0
        client = use_store(uri, uri)
        experiment = client.create_experiment("bench", artifact_location=(scratch / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment) as run:
            model_uri, _ = log_model_files(model)  # exactly as a training run logs it
        registry = Registry(client, "flight_delay")
        version = registry.register(model_uri, run.info.run_id, tags={})
        registry.promote(version, "benchmark", {})
        row = {k: (None if v != v else v) for k, v in split.test[spec.features.names].iloc[0].to_dict().items()}
        row = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        body = {"instances": [row]}
        emit(step="model", version=version, best_iteration=model.manifest["best_iteration"],
             features=len(spec.features.names))

        ours_port, theirs_port = free_port(), free_port()
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
        ours = subprocess.Popen([sys.executable, "-m", "ml_platform.cli", "serve", "--model", "flight_delay",
                                 "--port", str(ours_port), "--log", str(scratch / "log.sqlite")],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        theirs = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m",
                                   "models:/flight_delay@champion", "--env-manager", "local", "-h", "127.0.0.1",
                                   "-p", str(theirs_port)],
                                  env=env, stdout=(scratch / "mlflow.out").open("wb"), stderr=subprocess.STDOUT,
                                  start_new_session=True)
        try:
            ours_url = f"http://127.0.0.1:{ours_port}/v1/models/flight_delay/predict"
            theirs_url = f"http://127.0.0.1:{theirs_port}/invocations"
            wait_ready(ours_url, body, ours)
            try:
                wait_ready(theirs_url, body, theirs)
            except RuntimeError:
                print((scratch / "mlflow.out").read_text()[-3000:], file=sys.stderr)
                raise
            ours_answer = requests.post(ours_url, json=body, timeout=5).json()["predictions"][0]
            theirs_answer = requests.post(theirs_url, json=body, timeout=5).json()["predictions"][0]
            emit(step="parity", ours=ours_answer, mlflow=theirs_answer,
                 same=bool(abs(ours_answer - theirs_answer) <= 1e-9),
                 note="mlflow serves the registered pyfunc as is: the category levels travel in its manifest")
            theirs_result = run_wrk(wrk, theirs_url, body, args.seconds, args.connections, scratch)
            emit(step="mlflow_models_serve", **theirs_result)
            ours_result = run_wrk(wrk, ours_url, body, args.seconds, args.connections, scratch)
            emit(step="ml_platform_serve", **ours_result)
        finally:
            stop(ours)
            stop(theirs)

        emit(**batch_scoring(model, split))
        emit(figure="serving_p99_ms", value=ours_result["p99_ms"], goal=10, met=bool(ours_result["p99_ms"] <= 10),
             mlflow_p99_ms=theirs_result["p99_ms"])
        ratio = ours_result["rps"] / theirs_result["rps"]
        emit(figure="serving_rps_ratio_vs_mlflow", value=round(ratio, 2), goal=10, met=bool(ratio >= 10),
             ours_rps=ours_result["rps"], mlflow_rps=theirs_result["rps"],
             non_2xx={"ours": ours_result["non_2xx"], "mlflow": theirs_result["non_2xx"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
