"""Derived features any spec can name (`ml_platform.core.derived:<function>`).

Each takes the raw frame and the name of its timestamp column and returns one value per row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def hour_of_day(frame: pd.DataFrame, timestamp: str) -> pd.Series:
    """Hour of the event, 0-23."""
    values: pd.Series = frame[timestamp].dt.hour
    return values


def day_of_week(frame: pd.DataFrame, timestamp: str) -> pd.Series:
    """Day of the week, Monday=0."""
    values: pd.Series = frame[timestamp].dt.dayofweek
    return values


def month(frame: pd.DataFrame, timestamp: str) -> pd.Series:
    """Month of the year, 1-12 (seasonality)."""
    values: pd.Series = frame[timestamp].dt.month
    return values
