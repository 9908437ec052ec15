"""Reliability of the endpoint and its prediction log under load and under `kill -9`.

Traffic goes only to 127.0.0.1, is bounded in time, and every server is stopped by the fixtures.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time

import aiohttp
import pandas as pd
import pytest

from ml_platform.serving.prediction_log import read_log


def _records(frame: pd.DataFrame) -> list[dict]:
    return [
        {k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]


async def _load(url: str, rows: list[dict], connections: int, seconds: float, on_started=None) -> dict:
    """`connections` clients send single-row requests for `seconds`; returns what each response said."""
    answered: list[str] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    deadline = time.monotonic() + seconds

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        n = 0
        while time.monotonic() < deadline:
            body = {"instances": [rows[(i * 7919 + n) % len(rows)]]}
            n += 1
            try:
                async with session.post(url, json=body) as response:
                    statuses[response.status] = statuses.get(response.status, 0) + 1
                    payload = await response.json()
                    if response.status == 200:
                        answered.append(payload["request_id"])
            except (TimeoutError, aiohttp.ClientError) as error:
                errors.append(type(error).__name__)
                await asyncio.sleep(0.05)

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:
        tasks = [asyncio.create_task(client(i, session)) for i in range(connections)]
        if on_started is not None:
            await on_started()
        await asyncio.gather(*tasks)
    return {"answered": answered, "statuses": statuses, "errors": errors}


def test_sixty_seconds_at_32_connections(trained, start_server):
    _spec, folders, holdout = trained
    server = start_server("--model-dir", str(folders[0]), "--workers", "2")
    result = asyncio.run(_load(server.predict_url(), _records(holdout.head(500)), connections=32, seconds=60))
    assert result["errors"] == []
    assert not any(status >= 500 for status in result["statuses"]), result["statuses"]
    assert result["statuses"].get(200, 0) == len(result["answered"]) > 1000
    log = read_log(server.log_path)
    assert len(log) == len(result["answered"])
    assert set(log["request_id"]) == set(result["answered"])


@pytest.mark.parametrize("workers, fsync", [(1, True), (2, True), (1, False)])
def test_kill_minus_9_under_load_keeps_every_answered_prediction(
    trained, start_server, workers, fsync, tmp_path, write_spec
):
    """Every worker process commits a request's log row before answering it, so killing the whole server
    (main process and workers) loses no answered prediction; without fsync too (`serving.log.fsync: false`
    gives up only power-loss safety: a committed row is in the OS's cache)."""
    _spec, folders, holdout = trained
    folder = tmp_path / "specs"
    write_spec(folder, {"serving.log": {"fsync": fsync}}, name="flight_delay.yaml")
    server = start_server(
        "--model-dir", str(folders[0]), "--workers", str(workers), env={"ML_PLATFORM_SPECS": str(folder)}
    )

    async def kill_soon():
        await asyncio.sleep(3)
        server.stop(signal.SIGKILL)

    result = asyncio.run(
        _load(server.predict_url(), _records(holdout.head(500)), connections=16, seconds=5, on_started=kill_soon)
    )
    assert result["answered"], "no request was answered before the kill"
    assert result["errors"], "the kill should have cut some requests"
    connection = sqlite3.connect(server.log_path)
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    connection.close()
    restarted = start_server(
        "--model-dir",
        str(folders[0]),
        "--workers",
        str(workers),
        log_path=server.log_path,
        env={"ML_PLATFORM_SPECS": str(folder)},
    )
    log = read_log(restarted.log_path)
    missing = set(result["answered"]) - set(log["request_id"])
    assert missing == set(), f"{len(missing)} answered predictions are not in the log"
    assert len(log) >= len(result["answered"])  # requests cut after logging may be there too, never fewer


def test_a_killed_worker_is_replaced_and_its_answers_stay_logged(trained, start_server):
    """kill -9 of one worker: the server starts another, the other worker keeps answering meanwhile, and the
    log holds every answered request of both."""
    import os

    _spec, folders, holdout = trained
    server = start_server("--model-dir", str(folders[0]), "--workers", "2")
    workers = _children(server.process.pid)
    assert len(workers) == 2

    async def kill_one_worker():
        await asyncio.sleep(2)
        os.kill(workers[0], signal.SIGKILL)

    result = asyncio.run(
        _load(server.predict_url(), _records(holdout.head(300)), connections=8, seconds=8, on_started=kill_one_worker)
    )
    assert result["statuses"].get(200, 0) > 100
    assert not any(status >= 500 and status != 503 for status in result["statuses"]), result["statuses"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (
        len(_children(server.process.pid)) < 2 or workers[0] in _children(server.process.pid)
    ):
        time.sleep(0.2)
    assert len(_children(server.process.pid)) == 2 and workers[0] not in _children(server.process.pid)
    log = read_log(server.log_path)
    assert set(result["answered"]) <= set(log["request_id"])


def _children(pid: int) -> list[int]:
    from pathlib import Path

    tasks = Path(f"/proc/{pid}/task")
    found = []
    for task in tasks.iterdir():
        children = (task / "children").read_text().split()
        found += [int(child) for child in children]
    return sorted(found)
