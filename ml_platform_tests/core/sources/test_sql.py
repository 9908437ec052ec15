"""The `sql` source against SQLite and a real PostgreSQL server started by the test (Debian's package)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from ml_platform.core.sources import SourceError, open_source
from ml_platform.spec import ModelSpec, SpecError, load_spec

QUERY = "SELECT * FROM events WHERE ts >= :start AND ts < :end ORDER BY ts"


def _spec(url: str, query: str = QUERY) -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "name": "events",
            "description": "d",
            "owner": "me@example.com",
            "task": "binary",
            "source": {"kind": "sql", "url": url, "query": query},
            "timestamp": "ts",
            "partitions": {"start": "2024-01-01"},
            "target": {"expression": "y > 0"},
            "features": {"numeric": ["x"], "categorical": ["c"]},
        }
    )


def _events() -> pd.DataFrame:
    stamps = pd.date_range("2024-01-01", periods=72, freq="h")
    return pd.DataFrame({"ts": stamps, "x": range(72), "c": ["a", "b", "c"] * 24, "y": [0, 1] * 36})


def test_sqlite_returns_exactly_one_day(tmp_path):
    database = tmp_path / "events.db"
    with sqlite3.connect(database) as connection:
        _events().assign(ts=lambda f: f["ts"].astype(str)).to_sql("events", connection, index=False)
    source = open_source(_spec(f"sqlite:///{database}"), tmp_path)
    day = source.load(datetime(2024, 1, 2), datetime(2024, 1, 3))
    assert len(day) == 24 and day["x"].tolist() == list(range(24, 48))
    assert pd.api.types.is_datetime64_any_dtype(day["ts"])


def test_a_database_error_is_a_source_error(tmp_path):
    database = tmp_path / "empty.db"
    sqlite3.connect(database).close()
    with pytest.raises(SourceError, match="SQL query failed: no such table: events"):
        open_source(_spec(f"sqlite:///{database}"), tmp_path).load(datetime(2024, 1, 1), datetime(2024, 1, 2))


def test_a_query_without_bind_parameters_is_a_spec_error(tmp_path, write_spec):
    path = write_spec(
        tmp_path,
        {
            "source": {"kind": "sql", "url": "sqlite://", "query": "SELECT * FROM events"},
            "partitions.start": "2024-01-01",
        },
    )
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert "source.query" in str(caught.value) and ":start" in str(caught.value)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@pytest.fixture(scope="module")
def postgres_url():
    """A real PostgreSQL server on 127.0.0.1 (installed from Debian's packages when missing), stopped after."""
    binaries = _postgres_bin()
    if binaries is None:
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            pytest.skip("PostgreSQL is not installed and cannot be installed here (needs root and apt-get)")
        subprocess.run(
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql",
            shell=True,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=900,
        )
        binaries = _postgres_bin()
    assert binaries is not None, "postgresql installed but initdb not found"
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="ml_platform_pg_"))
    data, sockets = folder / "data", folder / "sockets"
    data.mkdir()
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        shutil.chown(data, "postgres")
        shutil.chown(sockets, "postgres")
    port = _free_port()
    subprocess.run(
        [*as_postgres, str(binaries / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    subprocess.run(
        [
            *as_postgres,
            str(binaries / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(folder / "server.log"),
            "-w",
            "-o",
            f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1",
            "start",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                sa.create_engine(url).connect().close()
                break
            except sa.exc.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        yield url
    finally:
        subprocess.run(
            [*as_postgres, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(folder, ignore_errors=True)


def test_postgresql_returns_exactly_one_day(postgres_url, tmp_path):
    engine = sa.create_engine(postgres_url)
    with engine.begin() as connection:
        _events().to_sql("events", connection, index=False, if_exists="replace")
    source = open_source(_spec(postgres_url), tmp_path)
    day = source.load(datetime(2024, 1, 3), datetime(2024, 1, 4))
    assert len(day) == 24 and day["x"].tolist() == list(range(48, 72))
    assert day["ts"].min() == pd.Timestamp("2024-01-03") and day["ts"].max() == pd.Timestamp("2024-01-03 23:00")
    assert source.describe()["url"].startswith("postgresql+psycopg2://postgres@127.0.0.1")


def test_postgresql_errors_are_source_errors(postgres_url, tmp_path):
    bad = open_source(_spec(postgres_url, "SELECT * FROM missing WHERE ts >= :start AND ts < :end"), tmp_path)
    with pytest.raises(SourceError, match='relation "missing" does not exist'):
        bad.load(datetime(2024, 1, 1), datetime(2024, 1, 2))
