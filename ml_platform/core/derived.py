"""Derived features any spec can name (`ml_platform.core.derived:<function>`).

Each takes the raw frame and the name of its timestamp column and returns one value per row.
"""

from __future__ import annotations

import pandas as pd


def hour_of_day(frame: pd.DataFrame, timestamp: str) -> pd.Series:
    """Hour of the event, 0-23."""
    return frame[timestamp].dt.hour


def day_of_week(frame: pd.DataFrame, timestamp: str) -> pd.Series:
    """Day of the week, Monday=0."""
    return frame[timestamp].dt.dayofweek


def month(frame: pd.DataFrame, timestamp: str) -> pd.Series:
    """Month of the year, 1-12 (seasonality)."""
    return frame[timestamp].dt.month
