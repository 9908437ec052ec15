"""Parquet per partition: round trip, only the asked partitions are read, nothing half-written on failure."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from ml_platform.defs.io_manager import PartitionedParquetIOManager

DAYS = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_date="2026-01-10")
KEY = dg.AssetKey(["model", "stage"])


def _frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"x": range(n), "c": ["a"] * n})


def _out(io: PartitionedParquetIOManager, start: str, end: str):
    return dg.build_output_context(
        asset_key=KEY, asset_partitions_def=DAYS, asset_partition_key_range=dg.PartitionKeyRange(start, end)
    )


def _in(start: str, end: str):
    return dg.build_input_context(
        asset_key=KEY, asset_partitions_def=DAYS, asset_partition_key_range=dg.PartitionKeyRange(start, end)
    )


def test_round_trip_one_file_per_partition(tmp_path):
    io = PartitionedParquetIOManager(base_path=str(tmp_path))
    io.handle_output(
        _out(io, "2026-01-01", "2026-01-03"),
        {"2026-01-01": _frame(1), "2026-01-02": _frame(2), "2026-01-03": _frame(3)},
    )
    files = sorted(p.name for p in (tmp_path / "model" / "stage").iterdir())
    assert files == ["2026-01-01.parquet", "2026-01-02.parquet", "2026-01-03.parquet"]
    assert len(io.load_input(_in("2026-01-02", "2026-01-02"))) == 2
    assert len(io.load_input(_in("2026-01-01", "2026-01-03"))) == 6


def test_loads_only_the_partitions_asked_for(tmp_path):
    io = PartitionedParquetIOManager(base_path=str(tmp_path))
    io.handle_output(_out(io, "2026-01-01", "2026-01-02"), {"2026-01-01": _frame(1), "2026-01-02": _frame(2)})
    (tmp_path / "model" / "stage" / "2026-01-01.parquet").write_bytes(b"not parquet")
    assert len(io.load_input(_in("2026-01-02", "2026-01-02"))) == 2


def test_a_missing_partition_is_named(tmp_path):
    io = PartitionedParquetIOManager(base_path=str(tmp_path))
    with pytest.raises(dg.Failure, match="2026-01-05"):
        io.load_input(_in("2026-01-05", "2026-01-05"))


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    io = PartitionedParquetIOManager(base_path=str(tmp_path))
    unwritable = pd.DataFrame({"x": [object(), object()]})  # pyarrow cannot store arbitrary objects
    with pytest.raises(Exception):  # noqa: B017 - whatever pyarrow raises; the point is what is left on disk
        io.handle_output(_out(io, "2026-01-01", "2026-01-02"), {"2026-01-01": _frame(1), "2026-01-02": unwritable})
    folder = tmp_path / "model" / "stage"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_a_range_needs_one_frame_per_partition(tmp_path):
    io = PartitionedParquetIOManager(base_path=str(tmp_path))
    with pytest.raises(dg.Failure, match="partition"):
        io.handle_output(_out(io, "2026-01-01", "2026-01-02"), _frame(3))


def test_object_storage_urls(tmp_path):
    """A UPath base: the in-memory fsspec filesystem stands in for s3:// or gs://."""
    io = PartitionedParquetIOManager(base_path="memory://ml-platform-test/storage")
    io.handle_output(_out(io, "2026-01-04", "2026-01-04"), _frame(4))
    assert len(io.load_input(_in("2026-01-04", "2026-01-04"))) == 4


def _categorical_day(levels: list, rows: list) -> pd.DataFrame:
    return pd.DataFrame({"x": range(len(rows)), "c": pd.Categorical(rows, categories=levels)})


def test_categorical_columns_stay_categorical_across_partitions_with_different_levels(tmp_path):
    """Each day keeps its own levels on disk; loaded together they share the sorted union of them (a plain
    pd.concat would fall back to object text), and every value and missing value is unchanged."""
    io = PartitionedParquetIOManager(base_path=str(tmp_path))
    days = {
        "2026-01-01": _categorical_day(["b", "c"], ["c", "b", None]),
        "2026-01-02": _categorical_day(["a"], ["a", "a"]),
        "2026-01-03": _categorical_day([], [None]),
    }  # all missing: Parquet stores the column untyped
    io.handle_output(_out(io, "2026-01-01", "2026-01-03"), days)
    one = io.load_input(_in("2026-01-01", "2026-01-01"))
    assert isinstance(one["c"].dtype, pd.CategoricalDtype) and list(one["c"].cat.categories) == ["b", "c"]
    loaded = io.load_input(_in("2026-01-01", "2026-01-03"))
    assert isinstance(loaded["c"].dtype, pd.CategoricalDtype)
    assert list(loaded["c"].cat.categories) == ["a", "b", "c"]
    assert loaded["c"].astype(object).where(loaded["c"].notna(), None).tolist() == ["c", "b", None, "a", "a", None]
    assert loaded["x"].tolist() == [0, 1, 2, 0, 1, 0]


def test_partitions_stored_as_text_join_categorical_ones(tmp_path):
    """A day stored before features were categorical (object text) loads beside a categorical day."""
    io = PartitionedParquetIOManager(base_path=str(tmp_path))
    io.handle_output(
        _out(io, "2026-01-01", "2026-01-02"),
        {"2026-01-01": pd.DataFrame({"x": [0, 1], "c": ["z", None]}), "2026-01-02": _categorical_day(["a"], ["a"])},
    )
    loaded = io.load_input(_in("2026-01-01", "2026-01-02"))
    assert list(loaded["c"].cat.categories) == ["a", "z"]
    assert loaded["c"].isna().tolist() == [False, True, False]


def test_stored_files_read_back_as_pandas_wrote_them(tmp_path):
    """The IO manager writes through pyarrow directly; a stored day must be what `to_parquet` stores."""
    from ml_platform.core.engine import write_parquet

    day = pd.DataFrame(
        {
            "t": pd.to_datetime(["2026-01-01 05:00", "2026-01-01 06:30", None]),
            "c": pd.Categorical(["b", None, "a"]),
            "s": ["x", None, "z"],
            "f": [1.5, None, 3.0],
            "i": [1, 2, 3],
        }
    )
    day.to_parquet(tmp_path / "pandas.parquet", index=False)
    with open(tmp_path / "direct.parquet", "wb") as handle:
        write_parquet(day, handle)
    pandas, direct = pd.read_parquet(tmp_path / "pandas.parquet"), pd.read_parquet(tmp_path / "direct.parquet")
    pd.testing.assert_frame_equal(direct, pandas, check_exact=True)
    pd.testing.assert_frame_equal(direct, day, check_exact=True)


def test_a_write_reports_its_time(tmp_path):
    io = PartitionedParquetIOManager(base_path=str(tmp_path))
    context = _out(io, "2026-01-01", "2026-01-02")
    io.handle_output(context, {"2026-01-01": _frame(1), "2026-01-02": _frame(2)})
    metadata = context.get_logged_metadata()
    assert metadata["stored_rows"].value == 3
    assert set(metadata["write_seconds"].value) == {"s", "cpu_s"}


def test_an_input_loads_as_the_frame_of_the_engine_its_metadata_names(tmp_path):
    """The model's engine names itself in its frame inputs' metadata: Dask gets a lazy frame over the stored
    files (nothing read but their footers), the local engine (or no name) one pandas frame."""
    from ml_platform.core.dask_frames import StoredPartitions
    from ml_platform.core.engine import ENGINE_KEY

    io = PartitionedParquetIOManager(base_path=str(tmp_path))
    io.handle_output(_out(io, "2026-01-01", "2026-01-02"), {"2026-01-01": _frame(1), "2026-01-02": _frame(2)})

    def named(engine: str | None):
        return dg.build_input_context(
            asset_key=KEY,
            asset_partitions_def=DAYS,
            asset_partition_key_range=dg.PartitionKeyRange("2026-01-01", "2026-01-02"),
            definition_metadata={ENGINE_KEY: engine} if engine else None,
        )

    lazy = io.load_input(named("dask"))
    assert isinstance(lazy, StoredPartitions) and lazy.keys == ["2026-01-01", "2026-01-02"]
    assert len(lazy.frame.compute(scheduler="sync")) == 3
    for engine in ("local", None):
        assert isinstance(io.load_input(named(engine)), pd.DataFrame) and len(io.load_input(named(engine))) == 3
