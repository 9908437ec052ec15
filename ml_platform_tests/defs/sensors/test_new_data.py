"""The new-data sensor against a real Dagster instance: a day's file appearing requests that day once, for a
`files` source with one file per day; any other source has no such sensor."""

from __future__ import annotations

import dagster as dg

from ml_platform.defs.sensors.new_data import new_data_sensor
from ml_platform.spec import load_spec

DAYS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-02-01")


def test_a_file_landing_requests_its_day_once(tmp_path, write_spec, instance):
    landing = tmp_path / "landing"
    landing.mkdir()
    spec = load_spec(
        write_spec(
            tmp_path / "specs",
            {"source": {"kind": "files", "path": str(landing / "{date}.csv")}, "partitions.start": "2024-01-01"},
        )
    )
    sensor = new_data_sensor(spec, DAYS)
    assert sensor.name == "flight_delay_new_data" and sensor.job_name == "flight_delay_data"

    @dg.asset(key=["flight_delay", "raw"], partitions_def=DAYS)
    def raw() -> None:
        """Stands in for the data stage."""

    defs = dg.Definitions(
        assets=[raw], sensors=[sensor], jobs=[dg.define_asset_job("flight_delay_data", selection=[raw.key])]
    )
    tick = lambda: sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    assert "no new files among the last 14 partitions" in tick().skip_message

    (landing / "2024-01-30.csv").write_text("a,b\n1,2\n")
    (request,) = tick().run_requests
    assert request.partition_key == "2024-01-30" and request.run_key == "new-data-2024-01-30-8"
    assert (
        request.tags.items()
        >= {
            "ml_platform/reason": "new data",
            "ml_platform/model": "flight_delay",
            "ml_platform/trigger": str(landing / "2024-01-30.csv"),
        }.items()
    )

    instance.report_runless_asset_event(dg.AssetMaterialization(raw.key, partition="2024-01-30"))
    assert "no new files" in tick().skip_message  # a loaded day is not requested again


def test_only_a_source_with_one_file_per_day_is_watched(tmp_path, write_spec):
    assert new_data_sensor(load_spec(write_spec(tmp_path / "bundled")), DAYS) is None
    one_file = write_spec(
        tmp_path / "one_file",
        {"source": {"kind": "files", "path": str(tmp_path / "all.csv")}, "partitions.start": "2024-01-01"},
    )
    assert new_data_sensor(load_spec(one_file), DAYS) is None
