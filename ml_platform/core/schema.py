"""The spec's data expectations as a Pandera schema, and a validation report people can act on.

Validation is lazy (every failure is collected, not just the first) and the report groups failures by
expectation: the column, what was expected, how many rows broke it, in which partitions, and sample rows.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from ml_platform.core.dtypes import DTYPES
from ml_platform.spec import ColumnExpectation, Expectations


def _dtype_check(name: str) -> pa.Check:
    test = DTYPES[name]
    return pa.Check(lambda s: test(s.dtype), element_wise=False, name=f"dtype_{name}")


def _column(expectation: ColumnExpectation) -> pa.Column:
    checks = []
    if expectation.dtype:
        checks.append(_dtype_check(expectation.dtype))
    if expectation.min is not None:
        checks.append(pa.Check.ge(expectation.min))
    if expectation.max is not None:
        checks.append(pa.Check.le(expectation.max))
    if expectation.allowed is not None:
        checks.append(pa.Check.isin(expectation.allowed))
    return pa.Column(nullable=expectation.nullable, unique=expectation.unique, checks=checks, required=True)


def build_schema(expectations: Expectations, name: str = "raw") -> pa.DataFrameSchema:
    """The Pandera schema of one partition: columns, dtypes, nulls, ranges, allowed values, uniqueness."""
    return pa.DataFrameSchema(
        {column: _column(expectation) for column, expectation in expectations.columns.items()},
        name=name,
        strict=False,
        coerce=False,
    )


@dataclass
class Failure:
    """One broken expectation: which column, what was expected, how often and where."""

    column: str
    expectation: str
    count: int
    partitions: list[str] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ValidationReport:
    rows: int
    failures: list[Failure]

    @property
    def passed(self) -> bool:
        return not self.failures

    def table(self) -> pd.DataFrame:
        """One row per failed expectation, for a metadata table."""
        return pd.DataFrame(
            [
                {
                    "column": f.column,
                    "expectation": f.expectation,
                    "failures": f.count,
                    "partitions": ", ".join(f.partitions[:5]) + (" …" if len(f.partitions) > 5 else ""),
                    "sample values": ", ".join(str(s.get(f.column, s.get("value"))) for s in f.samples[:5]),
                }
                for f in self.failures
            ],
            columns=["column", "expectation", "failures", "partitions", "sample values"],
        )


def validate(
    frame: pd.DataFrame,
    expectations: Expectations,
    partition_of: pd.Series | None = None,
    expected_partitions: list[str] | None = None,
    samples: int = 5,
) -> ValidationReport:
    """Check a frame against the expectations; `partition_of` maps each row to its partition key.

    Row counts per partition are checked here (not in Pandera) so that an empty or short partition inside a
    range is named, including partitions with no rows at all.
    """
    failures: list[Failure] = []
    if partition_of is None:
        partition_of = pd.Series("", index=frame.index)
    try:
        with warnings.catch_warnings():  # pandera's own concat of failure cases (categorical columns); not ours
            warnings.filterwarnings(
                "ignore", "The behavior of DataFrame concatenation with empty or all-NA", FutureWarning
            )
            build_schema(expectations).validate(frame, lazy=True)
    except SchemaErrors as errors:
        failures.extend(_failures(errors.failure_cases, frame, partition_of, samples))
    counts = partition_of.value_counts()
    short = [
        (key, int(counts.get(key, 0)))
        for key in (expected_partitions or list(counts.index))
        if counts.get(key, 0) < expectations.min_rows
    ]
    if short:
        failures.append(
            Failure(
                column="(rows)",
                expectation=f"at least {expectations.min_rows} rows per partition",
                count=len(short),
                partitions=[key for key, _ in short],
                samples=[{"value": f"{key}: {n} rows"} for key, n in short[:samples]],
            )
        )
    return ValidationReport(rows=len(frame), failures=failures)


def _failures(cases: pd.DataFrame, frame: pd.DataFrame, partition_of: pd.Series, samples: int) -> list[Failure]:
    failures = []
    missing_column = cases["check"].astype(str).eq("column_in_dataframe")
    columns = cases["column"].where(~missing_column, cases["failure_case"])
    cases = cases.assign(column=columns.fillna("(table)").astype(str), check=cases["check"].astype(str))
    for (column_label, check_label), group in cases.groupby(["column", "check"], sort=False):
        column, check = str(column_label), str(check_label)  # both made text by the `assign` above
        rows = group["index"].dropna()
        rows = rows[rows.isin(frame.index)] if len(rows) else rows
        if check.startswith("column_in_dataframe"):
            expectation, count = "column is present", 1
        elif not len(rows) and group["failure_case"].astype(str).str.contains("Error").any():
            expectation = f"{_describe_check(check)} (could not be evaluated: {group['failure_case'].iloc[0]})"
            count = 1
        elif check.startswith("dtype_"):
            expectation, count = f"dtype {check.removeprefix('dtype_')} (found {frame[column].dtype})", 1
        else:
            expectation, count = _describe_check(check), len(group)
        sample_rows = frame.loc[rows.iloc[:samples]] if len(rows) else pd.DataFrame()
        partitions = sorted(set(partition_of.loc[rows])) if len(rows) else []
        failures.append(
            Failure(
                column=column,
                expectation=expectation,
                count=int(count),
                partitions=[p for p in partitions if p],
                samples=_jsonable(sample_rows)
                if len(sample_rows)
                else [{"value": v} for v in group["failure_case"].iloc[:samples].tolist()],
            )
        )
    return failures


def _describe_check(check: str) -> str:
    return {"not_nullable": "no nulls", "field_uniqueness": "unique values"}.get(check, check)


def _jsonable(rows: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {
            str(k): (None if pd.isna(v) else v if isinstance(v, (int, float, str, bool)) else str(v))
            for k, v in row.items()
        }  # column names are text (Parquet stores them so)
        for row in rows.to_dict(orient="records")
    ]
