"""The embedded default's event log: Dagster's SQLite event log with its writes grouped.

Dagster's `SqliteEventLogStorage` builds a new SQLAlchemy engine for every connection, so every statement is
compiled afresh, and it stores a batch of events one at a time, several transactions each. A backfill logs two
events per partition and asset (planned, then materialized): a year of raw and features is 1,460 events, which
took longer than the work itself. This storage is the same tables and files with two changes:

- one engine per shard file, kept for the shard's next connection (the last `ENGINES_KEPT` shards); a connection
  is still opened and closed for each use, as before (no pool), so processes sharing the files are unaffected;
- a batch of asset events (the planned events of a run, the materializations of a partitioned step) is stored
  in one transaction per shard instead of several per event.

Dagster hands the storage batches only when `DAGSTER_EVENT_BATCH_SIZE` is set; `batch_size` in the config sets it
for the process that loads this storage, unless the environment already says otherwise. Configured in the
repository's `dagster.yaml` (`event_log_storage`); the production stack's PostgreSQL storage batches natively.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import dagster as dg
from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS, EVENT_TYPE_TO_PIPELINE_RUN_STATUS
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SQLITE_BUSY_TIMEOUT_SECONDS, SqliteEventLogStorage
from dagster._core.storage.sqlalchemy_compat import db_result
from dagster._serdes import ConfigurableClassData
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

ENGINES_KEPT = 64  # shard files whose engine (and compiled statements) a long-lived process keeps
BATCH_SIZE_VARIABLE = "DAGSTER_EVENT_BATCH_SIZE"
DEFAULT_BATCH_SIZE = 1000


class GroupedSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` that keeps an engine per shard and stores a batch of asset events together."""

    def __init__(
        self,
        base_dir: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        inst_data: ConfigurableClassData | None = None,
    ) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._pending_inst_data: ConfigurableClassData | None = inst_data
        if batch_size > 0:
            os.environ.setdefault(BATCH_SIZE_VARIABLE, str(batch_size))
        if base_dir is not None:
            super().__init__(base_dir, inst_data=inst_data)
        # else: the files go where Dagster's default puts them, in the home of the instance that registers it

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {
            "base_dir": dg.Field(
                dg.StringSource,
                is_required=False,
                description="Folder of the SQLite files; default: the instance's history/runs, Dagster's own place",
            ),
            "batch_size": dg.Field(int, default_value=DEFAULT_BATCH_SIZE, description="events per batch; 0: none"),
        }

    @classmethod
    def from_config_value(  # type: ignore[override]  # Dagster's signature names a narrower config type
        cls, inst_data: ConfigurableClassData | None, config_value: dict[str, Any]
    ) -> GroupedSqliteEventLogStorage:
        return cls(
            config_value.get("base_dir"),
            batch_size=config_value.get("batch_size", DEFAULT_BATCH_SIZE),
            inst_data=inst_data,
        )

    def register_instance(self, instance: dg.DagsterInstance) -> None:
        """Without `base_dir`, the storage opens its files only now, in this instance's home (whether it came
        from $DAGSTER_HOME or `DagsterInstance.from_config(folder)`)."""
        if not hasattr(self, "_base_dir"):
            runs = os.path.join(instance.root_directory, "history", "runs", "")
            super().__init__(runs, inst_data=self._pending_inst_data)
        super().register_instance(instance)

    def _engine(self, shard: str) -> Engine:
        engine = self._engines.get(shard)
        if engine is None:
            engine = create_engine(
                self.conn_string_for_shard(shard),
                poolclass=NullPool,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
            )
            self._engines[shard] = engine
            if len(self._engines) > ENGINES_KEPT:
                self._engines.popitem(last=False)[1].dispose()
        else:
            self._engines.move_to_end(shard)
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def store_event_batch(self, events: Sequence[dg.EventLogEntry]) -> None:
        """One run's asset and check events: one transaction in the run's shard, one in the index; the same rows
        `store_event` writes for each. Anything else is stored one event at a time."""
        if len({event.run_id for event in events}) != 1 or not all(_groupable(event) for event in events):
            for event in events:
                self.store_event(event)
            return
        statements = [self.prepare_insert_event(event) for event in events]
        with self.run_connection(events[0].run_id) as conn:
            for statement in statements:
                conn.execute(statement)
        checks: list[tuple[dg.EventLogEntry, int]] = []
        with self.index_transaction() as conn:
            for event, statement in zip(events, statements, strict=True):
                with db_result(conn, statement) as result:
                    event_id = result.inserted_primary_key[0]
                if event_id is None:
                    raise dg.DagsterInvariantViolationError("Cannot store asset event tags for null event id.")
                if event.dagster_event_type in ASSET_EVENTS:
                    self._store_asset_event_tags(conn, [event], [event_id])
                    self._store_asset_event(conn, event, event_id)
                else:
                    checks.append((event, event_id))
        for event, event_id in checks:
            self.store_asset_check_event(event, event_id)

    def dispose(self) -> None:
        with self._db_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()
        super().dispose()


def _groupable(event: dg.EventLogEntry) -> bool:
    """An asset or check event, which `store_event` mirrors into the index and nothing else."""
    kind = event.dagster_event_type
    return (
        kind is not None
        and (kind in ASSET_EVENTS or kind in ASSET_CHECK_EVENTS)
        and kind not in EVENT_TYPE_TO_PIPELINE_RUN_STATUS
    )
