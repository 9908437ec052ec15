"""The embedded default's event log (`ml_platform/sqlite_event_log.py`) against Dagster's own SQLite event log:
the same runs, stored through each, read back the same way — materialized, failed and in-progress partitions,
asset check results, the run's events — while the grouped one stores each batch in a few transactions."""

import os
import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from ml_platform import sqlite_event_log
from ml_platform.sqlite_event_log import GroupedSqliteEventLogStorage

REPO = Path(__file__).resolve().parent.parent
DAYS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-02-15")
BAD_DAY = "2024-01-20"  # `late` fails on this day in the failing run


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def early(context: dg.AssetExecutionContext) -> dict[str, int]:
    return {key: i for i, key in enumerate(context.partition_keys)}


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def late(context: dg.AssetExecutionContext, early: dict[str, int]) -> dict[str, int]:
    if context.run.tags.get("fail") and BAD_DAY in context.partition_keys:
        raise dg.Failure(f"bad day {BAD_DAY}")
    return {key: value * 2 for key, value in early.items()}


@dg.asset_check(asset=late, blocking=True)
def late_is_even() -> dg.AssetCheckResult:
    late = [v for (name, _), v in STORED.items() if name == "late"]
    return dg.AssetCheckResult(passed=all(v % 2 == 0 for v in late), metadata={"days": len(late)})


class DictIOManager(dg.ConfigurableIOManager):
    """Partition → value in memory of the run (the test compares storages, not IO)."""

    def handle_output(self, context: dg.OutputContext, obj: dict[str, int]) -> None:
        STORED.update({(context.asset_key.to_user_string(), k): v for k, v in obj.items()})

    def load_input(self, context: dg.InputContext) -> dict[str, int]:
        name = context.asset_key.to_user_string()
        return {k: STORED[(name, k)] for k in context.asset_partition_keys}


STORED: dict[tuple[str, str], int] = {}
DEFS = dg.Definitions(
    assets=[early, late],
    asset_checks=[late_is_even],
    jobs=[dg.define_asset_job("both", selection=[early, late])],
    resources={"io_manager": DictIOManager()},
)


def _instance(home: Path, grouped: bool, monkeypatch: pytest.MonkeyPatch) -> dg.DagsterInstance:
    home.mkdir()
    if grouped:  # the repository's own settings, as `make dev` has them
        shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    return dg.DagsterInstance.from_config(str(home))


def _run(instance: dg.DagsterInstance, first: str, last: str, **tags: str) -> dg.ExecuteInProcessResult:
    return DEFS.resolve_job_def("both").execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last, **tags},
        raise_on_error=False,
    )


def _what_it_reads(instance: dg.DagsterInstance) -> dict:
    """What the UI, sensors and automation read back from the event log, without ids and times."""
    keys = [dg.AssetKey("early"), dg.AssetKey("late")]
    statuses = {}
    for key in keys:
        record = instance.get_asset_records([key])[0].asset_entry
        latest = record.last_materialization
        statuses[key.to_user_string()] = {
            "materialized": sorted(instance.get_materialized_partitions(key)),
            "latest_partition": latest.dagster_event.partition if latest and latest.dagster_event else None,
            "failed": sorted(_failed(instance, key)),
            "planned_events": len(
                instance.fetch_planned_materializations(dg.AssetRecordsFilter(asset_key=key), limit=10_000).records
            ),
        }
    check = dg.AssetCheckKey(dg.AssetKey("late"), "late_is_even")
    executions = instance.event_log_storage.get_asset_check_execution_history(check, limit=100)
    statuses["checks"] = sorted(str(e.status) for e in executions)
    statuses["runs"] = sorted(
        (
            str(run.status),
            sorted(
                str(r.event_log_entry.dagster_event_type)
                for r in instance.get_records_for_run(run.run_id, limit=100_000).records
            ),
        )
        for run in instance.get_runs()
    )
    return statuses


def _failed(instance: dg.DagsterInstance, key: dg.AssetKey) -> list[str]:
    from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

    value = get_and_update_asset_status_cache_value(instance, key, DAYS)
    assert value is not None
    return list(value.deserialize_failed_partition_subsets(DAYS).get_partition_keys())


@pytest.fixture
def batching(monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch size is process-wide: each test sets and clears its own."""
    monkeypatch.delenv(sqlite_event_log.BATCH_SIZE_VARIABLE, raising=False)


def test_the_repository_instance_uses_the_grouped_storage_and_turns_batches_on(tmp_path, batching, monkeypatch):
    instance = _instance(tmp_path / "home", grouped=True, monkeypatch=monkeypatch)
    assert isinstance(instance.event_log_storage, GroupedSqliteEventLogStorage)
    assert instance.event_log_storage._base_dir == str(tmp_path / "home" / "history" / "runs")
    settings = yaml.safe_load((REPO / "dagster.yaml").read_text())["event_log_storage"]["config"]
    assert os.environ[sqlite_event_log.BATCH_SIZE_VARIABLE] == str(settings["batch_size"])
    # a value already in the environment wins over the config
    monkeypatch.setenv(sqlite_event_log.BATCH_SIZE_VARIABLE, "7")
    GroupedSqliteEventLogStorage(str(tmp_path / "other"), batch_size=1000)
    assert os.environ[sqlite_event_log.BATCH_SIZE_VARIABLE] == "7"


def test_same_reads_as_dagsters_own_storage_after_a_backfill_a_failed_run_and_a_rerun(tmp_path, batching, monkeypatch):
    calls: list[int] = []
    store_batch = GroupedSqliteEventLogStorage.store_event_batch

    def counted(self, events):
        calls.append(len(events))
        return store_batch(self, events)

    monkeypatch.setattr(GroupedSqliteEventLogStorage, "store_event_batch", counted)
    plain = _instance(tmp_path / "plain", grouped=False, monkeypatch=monkeypatch)
    grouped = _instance(tmp_path / "grouped", grouped=True, monkeypatch=monkeypatch)
    assert type(plain.event_log_storage) is SqliteEventLogStorage
    reads = []
    for instance in (plain, grouped):
        assert _run(instance, "2024-01-01", "2024-01-31").success
        assert not _run(instance, "2024-01-15", "2024-02-10", fail="yes").success
        assert _run(instance, "2024-02-01", "2024-02-03").success
        reads.append(_what_it_reads(instance))
    assert reads[0] == reads[1]
    late = reads[1]["late"]
    # the failing run's partitions are failed where no later run materialized them (its latest attempt failed)
    failed = [f"2024-01-{d:02d}" for d in range(15, 32)] + [f"2024-02-{d:02d}" for d in range(4, 11)]
    assert late["failed"] == failed, late["failed"]
    assert len(late["materialized"]) == 31 + 3
    # planned events: one per partition and run, on both storages; the grouped one got them in batches
    assert reads[1]["early"]["planned_events"] == 31 + 27 + 3
    assert calls and max(calls) >= 31, calls


def test_engines_are_kept_per_shard_up_to_the_limit_and_disposed(tmp_path, batching, monkeypatch):
    monkeypatch.setattr(sqlite_event_log, "ENGINES_KEPT", 2)
    instance = _instance(tmp_path / "home", grouped=True, monkeypatch=monkeypatch)
    storage = instance.event_log_storage
    assert isinstance(storage, GroupedSqliteEventLogStorage)
    for first in ("2024-01-01", "2024-01-05", "2024-01-09"):
        assert _run(instance, first, first).success
    assert len(storage._engines) == 2  # the index and the newest run's shard
    assert "index" in storage._engines
    assert len(instance.get_runs()) == 3 and len(_what_it_reads(instance)["early"]["materialized"]) == 3
    instance.dispose()
    assert not storage._engines


def test_without_base_dir_the_files_are_in_the_home_of_the_instance_whatever_dagster_home_says(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "elsewhere"))
    instance = _instance(tmp_path / "home", grouped=True, monkeypatch=monkeypatch)
    assert _run(instance, "2024-01-01", "2024-01-02").success
    assert (tmp_path / "home" / "history" / "runs" / "index.db").exists()
    assert not (tmp_path / "elsewhere").exists()
    # and with base_dir, there
    explicit = GroupedSqliteEventLogStorage.from_config_value(None, {"base_dir": str(tmp_path / "x"), "batch_size": 0})
    assert explicit._base_dir == str(tmp_path / "x") and (tmp_path / "x" / "index.db").exists()
