"""Where one single-row predict request's cost goes, part by part, in process (no HTTP server, no wrk).

`benchmarks/serving.py` measures our endpoint at a fraction of the requests per second of a bare floor app
(`benchmarks/serving_floor.py`: orjson + Booster.predict) on the same server. This breaks the request down: it
trains the same flight_delay model (56 replayed days, features built per day as the pipeline stores them, the
functions of `benchmarks/serving.py`), saves it to a temporary folder, takes the first test row as a client
sends it (NaN as null) and times each piece of work the endpoint does for it. Every figure is in µs per request
(per row for the log), `cpu_us` CPU time and `wall_us` elapsed time, the best of 3 repeats (sync parts: the
best of 15 slices). Other work shares the machine, so `cpu_us` is the figure to compare; `wall_us` also counts
time spent waiting (for the disk, for another process holding the core). Sync parts are timed with
`time.thread_time()` (this thread only); the async ones (the log, the whole app) with `time.process_time()`
(every thread of the process: the log's writer too), beside the event loop thread's own (`loop_cpu_us`).

Parts, in the order a request meets them (`ServingApp._predict` and `_answer`):

- `loads`: `orjson.loads` of the body.
- `validate`: `instances_of` + `validate_rows`, as `protocols.V1.parse` does.
- `predict_records`: `Model.predict_records` on the row (the endpoint's path: `encode` + LightGBM's single-row
  API, `row_predictor`); beside it `encode` alone (`FeatureEncoder.transform_records`), `row_predictor` alone
  and `booster_predict` (`Booster.predict(num_threads=1)` on the encoded row: what the floor pays).
- `log_row`: the log's row preparation in `_answer`: `outputs.tolist()`, `policy.view` and its `orjson.dumps`,
  the outputs' `orjson.dumps`, the row tuple.
- `answer_body`: `protocols.V1.answer` and the `orjson.dumps` of `respond_json`.
- `metrics`: the metric updates of one answered request (in-flight gauge up and down, predictions counter,
  latency histogram, requests counter), on cached children as `_answer` uses them.
- `log_append_c8`, `log_append_c64`: `PredictionLog.append` alone (fsync on, as served), 8 and 64 asyncio tasks
  appending at once to a temporary log. Commits are grouped: one transaction (one fsync) per batch of whatever
  rows queued meanwhile, so the cost per row falls as more requests share a commit; `rows_per_commit` says how
  many did. `loop_cpu_us` is the event loop's share (futures, wake-ups), `cpu_us - loop_cpu_us` the writer
  thread's (SQLite, the lock). `wall_us` per row is mostly the fsync divided by the batch.
- `app_c8`, `app_c64`: the whole `ServingApp` called through its ASGI interface (an HTTP POST scope to
  `/v1/models/flight_delay/predict`, Content-Type application/json, the body in one message; `send` only collects
  the answer), 8 or 64 requests at once; `app_without_log_*`: the same with the prediction log's `append` a no-op
  coroutine, so the difference is what the log costs a request inside the app. `requests_per_commit`: how many
  requests shared one log commit (in the app fewer than the concurrency: requests reach the log staggered).
- `floor_work`: the floor's own work for one request: `orjson.loads`, the row vector (`transform_records`
  computes exactly the floor's vector), `Booster.predict(num_threads=1)`, `orjson.dumps` of the answer;
  `floor_app_c8`: `serving_floor.create_app` called through ASGI the same way as ours.

How to read it: `sum_of_parts` (the sync parts the endpoint runs, without the log's append) against
`app_without_log` leaves what the ASGI dispatch, body reading, coroutine hops and response messages cost; `app`
against `app_without_log` gives the log's cost per request at that concurrency (compare with `log_append_c*`);
`app` against `floor_app` is the in-process ratio of work (a real server adds its own per-request cost to both,
which is why the HTTP ratio is closer to 1 than the CPU ratio here). The log's figures depend on how many
requests share one commit, and so on the concurrency and the disk. Inside the app a commit is shared by fewer
requests than are in flight (`requests_per_commit`), and the writer thread's wake-ups and GIL hand-offs land
between the loop's work, so the log costs a request there more than `log_append_c*` alone suggests.

The data is pinned: the model trains on 2013-05-01 → 2013-06-25 (the 2013 calendar itself).

    python benchmarks/serving_parts.py [--quick]

Prints one JSON line per part, then the figure in the contract's form (benchmarks/contract.py):
`serving_cost_breakdown_us`, our whole app's CPU µs per request at 8 concurrent requests against the floor app's
(`floor_app_c8`), with every part beside it. `--quick` (the guard's form): a model of 21 days (2013-05-01 →
2013-05-21) and a fifth of the calls per part; the same figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson
from contract import figure, quick_option
from serving import json_rows, stored_features
from serving_floor import create_app as floor_app

MODEL = "flight_delay"
REPEATS = 3
#: The share of each part's calls that runs (the quick form runs a fifth).
CALLS = {"share": 1.0}


def calls(n: int) -> int:
    return max(int(n * CALLS["share"]), 50)


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def timed_sync(call, n: int, chunks: int = 5) -> dict:
    """µs per call of `call()`, this thread's CPU and wall: REPEATS runs of `n` calls (after a warm-up), each timed
    in `chunks` slices; the best slice counts (a burst of other work on the machine spoils a slice, not the part)."""
    n = calls(n)
    for _ in range(min(n, 200)):
        call()
    size = n // chunks
    cpu, wall = math.inf, math.inf
    for _ in range(REPEATS * chunks):
        c0, w0 = time.thread_time(), time.perf_counter()
        for _ in range(size):
            call()
        c1, w1 = time.thread_time(), time.perf_counter()
        cpu, wall = min(cpu, (c1 - c0) / size), min(wall, (w1 - w0) / size)
    return {"cpu_us": round(cpu * 1e6, 2), "wall_us": round(wall * 1e6, 2), "calls": n * REPEATS}


async def timed_async(run_once, n: int, concurrency: int) -> dict:
    """µs per call of `await run_once()`, `concurrency` tasks calling it until `n` calls are done: the process's
    CPU (all threads), the event loop thread's CPU and wall, the best (by CPU) of REPEATS runs, after a warm-up."""
    n = calls(n)

    async def drive(total: int) -> None:
        left = [total]

        async def worker() -> None:
            while left[0] > 0:
                left[0] -= 1
                await run_once()

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    await drive(min(n, 500))
    best = None
    for _ in range(REPEATS):
        c0, t0, w0 = time.process_time(), time.thread_time(), time.perf_counter()
        await drive(n)
        c1, t1, w1 = time.process_time(), time.thread_time(), time.perf_counter()
        run = {
            "cpu_us": round((c1 - c0) / n * 1e6, 2),
            "wall_us": round((w1 - w0) / n * 1e6, 2),
            "loop_cpu_us": round((t1 - t0) / n * 1e6, 2),
        }
        if best is None or run["cpu_us"] < best["cpu_us"]:
            best = run
    assert best is not None
    return {**best, "calls": n, "concurrency": concurrency}


class AsgiCall:
    """One POST of `body` to `path` through an ASGI app, its answer checked (status 200)."""

    def __init__(self, app, path: str, body: bytes):
        self.app, self.body = app, body
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "headers": [
                (b"host", b"127.0.0.1:8000"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"accept", b"*/*"),
            ],
        }
        self.message = {"type": "http.request", "body": body, "more_body": False}
        self.statuses: dict[int, int] = {}

    async def __call__(self) -> None:
        message, status = self.message, []

        async def receive():
            return message

        async def send(event):
            if event["type"] == "http.response.start":
                status.append(event["status"])

        await self.app(self.scope, receive, send)
        self.statuses[status[0]] = self.statuses.get(status[0], 0) + 1


async def measure(folder: Path, scratch: Path, body: bytes, prediction: float) -> None:
    import numpy as np

    from ml_platform.core.model import Model
    from ml_platform.serving.app import ServingApp
    from ml_platform.serving.config import ServeConfig
    from ml_platform.serving.metrics import Metrics
    from ml_platform.serving.prediction_log import PredictionLog
    from ml_platform.serving.protocols import V1, Answer
    from ml_platform.serving.validation import instances_of, validate_rows

    config = ServeConfig(
        model=MODEL, log_path=str(scratch / "app_log.sqlite"), model_dir=str(folder), token=None, metrics_token=None
    )
    app = ServingApp(config)
    await app.startup()
    slot, prediction_log = app.slot, app.prediction_log
    assert slot is not None and prediction_log is not None, "the app loaded its model and opened its log"
    model: Model = slot.champion.model
    parts: dict[str, dict] = {}

    def part(name: str, result: dict, **extra) -> None:
        parts[name] = result
        emit(part=name, **result, **extra)

    # --- the sync pieces of one request ------------------------------------------------------------------
    payload = orjson.loads(body)
    rows, _ = instances_of(payload, config.max_rows)
    validate_rows(rows, slot.schema, "instances", config.unknown_fields, slot.allowed)
    matrix = model.encoder.transform_records(rows)
    outputs = model.predict_records(rows)
    assert abs(float(outputs[0]) - prediction) <= 1e-9
    assert abs(float(model.booster.predict(matrix, num_threads=1)[0]) - prediction) <= 1e-9
    row_predictor = model._row_predictor  # what predict_records uses for a few rows

    def validate():
        instances, _ = instances_of(payload, config.max_rows)
        validate_rows(instances, slot.schema, "instances", config.unknown_fields, slot.allowed)

    def log_row():
        predictions = outputs.tolist()
        return (
            "id",
            0.0,
            config.model,
            "1",
            len(rows),
            orjson.dumps(slot.policy.view(rows)).decode(),
            orjson.dumps(predictions).decode(),
            0.1,
            None,
            None,
            "champion",
        )

    def answer_body():
        answer = V1.answer(
            Answer(config.model, slot.champion.version, outputs.tolist(), None, "abc", model.task, {}), None
        )
        return orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)

    metrics = Metrics()

    def metric_updates():
        metrics.in_flight.inc()
        metrics.predicted("1", "answer").inc(1)
        metrics.latency_of("predict").observe(0.0007)
        metrics.request("predict", "200").inc()
        metrics.in_flight.dec()

    def floor_work():
        instances = orjson.loads(body)["instances"]
        values = model.booster.predict(model.encoder.transform_records(instances), num_threads=1).tolist()
        return orjson.dumps({"predictions": values})

    part("loads", timed_sync(lambda: orjson.loads(body), 50_000), body_bytes=len(body))
    part("validate", timed_sync(validate, 50_000))
    part("predict_records", timed_sync(lambda: model.predict_records(rows), 20_000))
    part("encode", timed_sync(lambda: model.encoder.transform_records(rows), 20_000))
    part("row_predictor", timed_sync(lambda: row_predictor.predict(matrix), 20_000))
    part("booster_predict", timed_sync(lambda: model.booster.predict(matrix, num_threads=1), 5_000))
    part("log_row", timed_sync(log_row, 50_000))
    part("answer_body", timed_sync(answer_body, 50_000))
    part("metrics", timed_sync(metric_updates, 50_000))
    part("floor_work", timed_sync(floor_work, 5_000))
    assert orjson.loads(floor_work())["predictions"][0] == float(outputs[0])

    # --- the prediction log's append alone, then the whole app through ASGI --------------------------------
    commits = [0]
    commit = PredictionLog._commit

    def counted(self, rows):  # called once per committed batch
        commits[0] += 1
        commit(self, rows)

    def per_commit(n: int) -> float:  # rows (requests) per commit over the warm-up and the repeats
        n = calls(n)
        return round((min(n, 500) + n * REPEATS) / max(commits[0], 1), 1)

    call = AsgiCall(app, f"/v1/models/{MODEL}/predict", body)
    PredictionLog._commit = counted  # type: ignore[method-assign]
    try:
        for concurrency, n in ((8, 3000), (64, 8000)):
            log = PredictionLog(scratch / f"log_c{concurrency}.sqlite")
            row = log_row()
            try:
                commits[0] = 0
                result = await timed_async(lambda: log.append(row), n, concurrency)
                part(
                    f"log_append_c{concurrency}",
                    result,
                    rows_per_commit=per_commit(n),
                    note="per row; fsync on; one commit per batch",
                )
            finally:
                await asyncio.to_thread(log.close)
        for concurrency, n in ((8, 3000), (64, 6000)):
            commits[0] = 0
            result = await timed_async(call, n, concurrency)
            part(f"app_c{concurrency}", result, requests_per_commit=per_commit(n))
    finally:
        PredictionLog._commit = commit  # type: ignore[method-assign]
    real_append = prediction_log.append

    async def no_append(row) -> None:
        return None

    prediction_log.append = no_append  # type: ignore[method-assign]
    try:
        for concurrency in (8, 64):
            part(f"app_without_log_c{concurrency}", await timed_async(call, 10_000, concurrency))
    finally:
        prediction_log.append = real_append  # type: ignore[method-assign]
    assert set(call.statuses) == {200}, call.statuses

    floor = floor_app(folder)
    floor_call = AsgiCall(floor, "/", body)
    part("floor_app_c8", await timed_async(floor_call, 10_000, 8))
    await app.shutdown()

    # --- the summary -----------------------------------------------------------------------------------------
    sync = ("loads", "validate", "predict_records", "log_row", "answer_body", "metrics")
    sum_of_parts = round(sum(parts[name]["cpu_us"] for name in sync), 2)
    figure(
        "serving_cost_breakdown_us",
        value=parts["app_c8"]["cpu_us"],
        unit="us",
        peer="the floor app (benchmarks/serving_floor.py) through ASGI the same way, 8 at once",
        peer_value=parts["floor_app_c8"]["cpu_us"],
        better="lower",
        goal=None,  # the goal is serving.py's serving_rps_vs_floor, over HTTP
        parts={name: result["cpu_us"] for name, result in parts.items()},
        sum_of_parts_cpu_us=sum_of_parts,
        sum_of_parts=list(sync),
        app_cpu_us=parts["app_c8"]["cpu_us"],
        app_without_log_cpu_us=parts["app_without_log_c8"]["cpu_us"],
        floor_cpu_us=parts["floor_work"]["cpu_us"],
        floor_app_cpu_us=parts["floor_app_c8"]["cpu_us"],
        app_c64_cpu_us=parts["app_c64"]["cpu_us"],
        app_without_log_c64_cpu_us=parts["app_without_log_c64"]["cpu_us"],
        log_in_app_cpu_us=round(parts["app_c8"]["cpu_us"] - parts["app_without_log_c8"]["cpu_us"], 2),
        log_in_app_c64_cpu_us=round(parts["app_c64"]["cpu_us"] - parts["app_without_log_c64"]["cpu_us"], 2),
        note="µs of CPU per single-row request (log: per row), best of 3; app figures at 8 concurrent requests "
        "(c64: 64); floor_cpu_us is the floor's own work without ASGI, floor_app_cpu_us through ASGI",
        rows_in_request=len(rows),
        features=len(model.encoder.names),
        dtype=str(np.asarray(outputs).dtype),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    quick_option(parser, "a 21-day model, a fifth of the calls per part")
    quick = parser.parse_args().quick
    if quick:
        CALLS["share"] = 0.2
    from ml_platform.core.sources import nycflights13
    from ml_platform.core.training import split_by_time, train
    from ml_platform.spec import BUNDLED_SPECS, load_spec

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ml_platform_serving_parts_") as folder:
        scratch = Path(folder)
        spec = load_spec(BUNDLED_SPECS / "flight_delay.yaml")
        last_day = datetime(2013, 5, 22) if quick else datetime(2013, 6, 26)
        raw = nycflights13.load(nycflights13.Replay(0), datetime(2013, 5, 1), last_day)
        split = split_by_time(stored_features(raw, spec), spec)
        model = train(spec, split).model
        saved = model.save(scratch / "model")
        body = orjson.dumps({"instances": json_rows(split.test[spec.features.names].iloc[:1])})
        prediction = float(model.predict(split.test.iloc[:1])[0])
        emit(
            step="model",
            best_iteration=model.manifest["best_iteration"],
            features=len(spec.features.names),
            seconds=round(time.perf_counter() - started, 1),
        )
        try:
            import uvloop  # the event loop Granian serves with

            loop_factory = uvloop.new_event_loop
        except ImportError:
            loop_factory = None
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(measure(saved, scratch, body, prediction))
    emit(step="done", seconds=round(time.perf_counter() - started, 1), loop="uvloop" if loop_factory else "asyncio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
