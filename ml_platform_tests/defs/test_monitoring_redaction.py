"""Drift on logged traffic leaves out the features the prediction log redacts (`serving.log.redact`): the log
holds their keyed hashes, which a comparison with training values would flag as entirely new levels."""

import pandas as pd

from ml_platform.serving.prediction_log import PredictionLog, log_path
from ml_platform_tests.defs.helpers import (
    _day,
    _day_features,
    _log_traffic,
    _materialize,
    _metadata,
    _partitions,
    _retrain,
)


def test_drift_on_the_log_skips_redacted_features_and_says_so(platform, instance):
    make, home = platform
    defs = make({"serving.log.redact": ["dest"]})
    partition = _partitions(defs)[0]
    assert _retrain(defs, instance, partition).success
    # a day without traffic is batch scored: nothing is redacted there, so dest is compared
    batch = _materialize(defs, instance, "drift", _day(partition, 2))
    assert "dest" in _stored_features(home, _day(partition, 2))
    assert "not_compared_redacted" not in _metadata(batch, "drift")

    # a day of logged traffic, as the endpoint logs it: dest hashed under the log's secret; the carrier mix shifts
    log = PredictionLog(log_path(home, "flight_delay"))
    policy = log.policy({"features": {"categorical": ["dest"]}}, ["dest"])
    log.close()
    day = _day(partition, 4)
    served = _day_features(home, day, 400)
    served = served.assign(carrier="WN", dest=[policy.hashed(str(d)) for d in served["dest"]])
    _log_traffic(home, f"drift-{day}", served, [0.9] * len(served))
    drifted = _materialize(defs, instance, "drift", day)
    assert drifted.success
    checks = {e.check_name: e for e in drifted.get_asset_check_evaluations()}
    over = checks["drift_fail"].metadata["features_over_threshold"].value
    assert "carrier" in over and "dest" not in over, "hashes are never compared with training values"
    metadata = _metadata(drifted, "drift")
    assert metadata["live_source"] == "prediction log" and metadata["rows"] == 400
    assert "`dest`: redacted in the prediction log" in metadata["not_compared_redacted"]
    assert "dest" not in _stored_features(home, day) and "carrier" in _stored_features(home, day)


def _stored_features(home, day: str) -> list[str]:
    return pd.read_parquet(home / "storage" / "flight_delay" / "drift" / f"{day}.parquet")["feature"].tolist()
