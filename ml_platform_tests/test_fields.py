"""Shared field types: durations as the spec writes them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ml_platform.fields import parse_duration


def test_durations():
    assert parse_duration("26h") == timedelta(hours=26)
    assert parse_duration("2d") == timedelta(days=2)
    assert parse_duration("90m") == timedelta(minutes=90)
    assert parse_duration(60) == timedelta(minutes=1)
    with pytest.raises(ValueError):
        parse_duration("soon")
