"""The replayed default dataset: weekday-aligned, pinned once, joined with weather and planes."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from ml_platform.core.sources import nycflights13, open_source


def test_offset_keeps_weekdays_and_puts_yesterday_in_the_replay():
    for today in (date(2026, 11, 24), date(2027, 2, 1), date(2030, 6, 15)):
        weeks = nycflights13.offset_weeks_for(today)
        replay = nycflights13.Replay(offset_days=7 * weeks)
        yesterday = today - timedelta(days=1)
        assert replay.first_day <= yesterday <= replay.last_day
        assert replay.to_source(yesterday).weekday() == yesterday.weekday()
        assert replay.last_day - yesterday < timedelta(days=7)


def test_pin_is_written_once_and_never_moves(tmp_path):
    first = nycflights13.pinned_replay("m", tmp_path, today=date(2026, 11, 24))
    later = nycflights13.pinned_replay("m", tmp_path, today=date(2027, 3, 1))
    assert later.offset_days == first.offset_days
    assert later.pinned_on == "2026-11-24"
    assert (tmp_path / "m.json").exists()


def test_offset_from_the_spec_wins(tmp_path):
    replay = nycflights13.pinned_replay("m", tmp_path, offset_weeks=10)
    assert replay.offset_days == 70 and replay.pinned_on == "spec"
    assert not (tmp_path / "m.json").exists()


def test_a_replayed_day_is_the_source_day_shifted(tmp_path):
    replay = nycflights13.Replay(offset_days=7 * 600)
    day = replay.first_day + timedelta(days=160)
    frame = nycflights13.load(
        replay,
        datetime.combine(day, datetime.min.time()),
        datetime.combine(day + timedelta(days=1), datetime.min.time()),
    )
    source = nycflights13.source_table()
    source_day = replay.to_source(day)
    expected = source[source["scheduled_departure"].dt.date == source_day]
    assert len(frame) == len(expected) > 600
    assert (frame["scheduled_departure"].dt.date == day).all()
    assert frame["flight_id"].is_unique and frame["flight_id"].str.startswith(day.isoformat()).all()
    assert list(frame.columns) == nycflights13.COLUMNS
    assert frame["temp"].notna().mean() > 0.95, "weather should join on origin and hour"
    assert frame["plane_seats"].notna().mean() > 0.8, "planes should join on tail number"


def test_open_source_exposes_the_replay(tmp_path, flight_spec):
    source = open_source(flight_spec, tmp_path)
    assert source.kind == "nycflights13"
    replay = source.replay
    assert replay.describe()["offset_weeks"] * 7 == replay.offset_days
    outside = source.load(datetime(2000, 1, 1), datetime(2000, 1, 2))
    assert outside.empty
