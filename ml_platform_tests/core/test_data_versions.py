"""Data versions are content hashes: the same rows give the same version, whatever the index."""

from __future__ import annotations

import pandas as pd

from ml_platform.core.data_versions import content_hash, versions_by_day


def test_a_data_version_depends_on_content_not_on_the_index(features):
    day = features.head(100)
    assert content_hash(day) == content_hash(day.set_axis(range(1000, 1100)))
    assert content_hash(day) != content_hash(day.assign(temp=day["temp"] + 1))


def test_each_day_of_a_window_has_its_own_version(features, spec):
    versions = versions_by_day(features, spec.timestamp)
    assert len(versions) == 56 and list(versions) == sorted(versions)
    first = features[features[spec.timestamp].dt.strftime("%Y-%m-%d") == "2013-05-01"]
    assert versions["2013-05-01"] == content_hash(first)


def test_versions_by_partition_follow_each_partition_time_window(features, spec):
    from datetime import datetime, timedelta

    from ml_platform.core.data_versions import versions_by_partition

    days = {
        (datetime(2013, 5, 1) + timedelta(days=i)).strftime("%Y-%m-%d"): (
            datetime(2013, 5, 1) + timedelta(days=i),
            datetime(2013, 5, 2) + timedelta(days=i),
        )
        for i in range(56)
    }
    assert versions_by_partition(features, spec.timestamp, days) == versions_by_day(features, spec.timestamp)
    hours = {
        f"2013-05-01-{h:02d}:00": (datetime(2013, 5, 1, h), datetime(2013, 5, 1, h) + timedelta(hours=1))
        for h in reversed(range(24))
    }
    by_hour = versions_by_partition(features, spec.timestamp, hours)
    stamps = features[spec.timestamp]
    with_rows = sorted(k for k, (start, end) in hours.items() if ((stamps >= start) & (stamps < end)).any())
    assert list(by_hour) == with_rows and 10 < len(with_rows) < 24  # no departures at night
    seven = features[(stamps >= datetime(2013, 5, 1, 7)) & (stamps < datetime(2013, 5, 1, 8))]
    assert by_hour["2013-05-01-07:00"] == content_hash(seven) != by_hour["2013-05-01-08:00"]


def test_a_categorical_column_has_the_version_of_the_same_text():
    """Features moved from text to Categoricals: the same values must stay the same data version, or every
    stored day would look changed and retrain for nothing."""
    text = pd.DataFrame({"carrier": ["UA", None, "AA", "UA"], "distance": [1.0, 2.0, None, 4.0]})
    categorical = text.assign(carrier=pd.Categorical(text["carrier"]))
    wider_levels = text.assign(carrier=pd.Categorical(text["carrier"], categories=["AA", "B6", "UA"]))
    assert content_hash(categorical) == content_hash(text) == content_hash(wider_levels)
    assert content_hash(text.assign(carrier=["UA", None, "AA", "DL"])) != content_hash(text)


def test_content_hashes_of_a_range_equal_each_partition_hashed_alone(features, spec):
    """A backfill hashes its range once; every day must get the version it gets when materialized alone,
    categorical days with their own levels included, and a day without rows the version of no rows."""
    from ml_platform.core.data_versions import content_hashes

    days = features[spec.timestamp].dt.strftime("%Y-%m-%d")
    hashes = content_hashes(features, days, [*sorted(days.unique()), "2013-07-01"])
    for day, rows in list(features.groupby(days))[:5]:
        alone = rows.reset_index(drop=True)
        alone = alone.assign(**{n: alone[n].cat.remove_unused_categories() for n in spec.features.all_categorical})
        assert hashes[day] == content_hash(alone)
    assert hashes["2013-07-01"] == content_hash(features.iloc[0:0])
    assert len(set(hashes.values())) == len(hashes)


def test_content_hashes_of_mixed_objects_fall_back_to_each_partition():
    """pandas hashes an object column holding anything but text through `str()` of every value, so such a
    column's row hashes depend on its neighbours: hashed partition by partition, the versions stay exact."""
    from ml_platform.core.data_versions import content_hashes

    frame = pd.DataFrame({"v": [b"a", "b", 1, b"a"], "n": [1.0, 2.0, 3.0, 4.0]})
    partition_of = pd.Series(["d1", "d1", "d2", "d2"])
    hashes = content_hashes(frame, partition_of, ["d1", "d2"])
    assert hashes == {"d1": content_hash(frame.iloc[:2]), "d2": content_hash(frame.iloc[2:])}
