"""The new-data sensor against a real Dagster instance: a day's file appearing requests that day once, through
its own model's data job, for every model whose `files` source has one file per day; a model whose files cannot
be read does not stop the others; no model with such a source, no sensor."""

from __future__ import annotations

import json

import dagster as dg

from ml_platform.defs.sensors.new_data import new_data_sensor
from ml_platform_tests.defs.sensors.stand_ins import definitions, specs, stand_in


def _files(landing) -> dict:
    return {"source": {"kind": "files", "path": str(landing / "{date}.csv")}, "partitions.start": "2024-01-01"}


def test_a_file_landing_requests_its_day_once(tmp_path, write_spec, instance):
    landing = tmp_path / "landing"
    landing.mkdir()
    (spec,) = specs(tmp_path / "specs", write_spec, ["flight_delay"], _files(landing))
    model = stand_in(spec)
    sensor = new_data_sensor([model[0]])
    assert sensor is not None and sensor.name == "new_data"
    assert [job.name for job in sensor.jobs] == ["flight_delay_data"]
    defs = definitions([model], sensor)
    tick = lambda: sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    assert tick().skip_message == "flight_delay: no new files among the last 14 partitions"

    (landing / "2024-01-30.csv").write_text("a,b\n1,2\n")
    (request,) = tick().run_requests
    assert request.partition_key == "2024-01-30" and request.run_key == "flight_delay-new-data-2024-01-30-8"
    assert request.job_name == "flight_delay_data"
    assert (
        request.tags.items()
        >= {
            "ml_platform/reason": "new data",
            "ml_platform/model": "flight_delay",
            "ml_platform/trigger": str(landing / "2024-01-30.csv"),
        }.items()
    )

    instance.report_runless_asset_event(dg.AssetMaterialization(["flight_delay", "raw"], partition="2024-01-30"))
    assert "no new files" in tick().skip_message  # a loaded day is not requested again


def test_each_model_gets_its_own_days_and_a_model_whose_files_cannot_be_read_does_not_stop_the_others(
    tmp_path, write_spec, instance
):
    """Three models on one sensor: each file lands as a request of its own model's job; the third model's
    files live on a storage nobody can read here (a protocol fsspec does not know): it is logged and named,
    and the others' requests still go out."""
    landings = {name: tmp_path / name for name in ("alpha", "beta")}
    for folder in landings.values():
        folder.mkdir()
    models = [
        stand_in(spec)
        for spec in [
            *specs(tmp_path / "a", write_spec, ["alpha"], _files(landings["alpha"])),
            *specs(tmp_path / "b", write_spec, ["beta"], _files(landings["beta"])),
            *specs(
                tmp_path / "c",
                write_spec,
                ["gamma"],
                {"source": {"kind": "files", "path": "nosuch://lake/{date}.csv"}, "partitions.start": "2024-01-01"},
            ),
        ]
    ]
    sensor = new_data_sensor([watched for watched, _assets in models])
    assert sensor is not None
    defs = definitions(models, sensor)
    tick = lambda: sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))

    quiet = tick()
    assert quiet.skip_message.splitlines() == [
        "gamma: FAILED (ValueError: Protocol not known: nosuch); see the tick's log",
        "alpha: no new files among the last 14 partitions",
        "beta: no new files among the last 14 partitions",
    ]
    assert json.loads(quiet.cursor) == {"_failed": {"gamma": "ValueError: Protocol not known: nosuch"}}

    (landings["alpha"] / "2024-01-29.csv").write_text("a\n1\n")
    (landings["beta"] / "2024-01-30.csv").write_text("a,b\n1,2\n")
    requests = {request.tags["ml_platform/model"]: request for request in tick().run_requests}
    assert set(requests) == {"alpha", "beta"}
    assert (requests["alpha"].job_name, requests["alpha"].partition_key) == ("alpha_data", "2024-01-29")
    assert (requests["beta"].job_name, requests["beta"].partition_key) == ("beta_data", "2024-01-30")
    assert requests["alpha"].run_key.startswith("alpha-") and requests["beta"].run_key.startswith("beta-")


def test_only_a_source_with_one_file_per_day_is_watched(tmp_path, write_spec):
    (bundled,) = specs(tmp_path / "bundled", write_spec, ["flight_delay"])
    (one_file,) = specs(
        tmp_path / "one_file",
        write_spec,
        ["flight_delay"],
        {"source": {"kind": "files", "path": str(tmp_path / "all.csv")}, "partitions.start": "2024-01-01"},
    )
    assert new_data_sensor([stand_in(bundled)[0], stand_in(one_file)[0]]) is None
