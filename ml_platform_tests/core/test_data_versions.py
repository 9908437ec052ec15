"""Data versions are content hashes: the same rows give the same version, whatever the index."""

from __future__ import annotations

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
