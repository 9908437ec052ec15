"""New data: for a `files` source with one file per day, a day's file appearing materializes that day, so a
day is loaded when it lands rather than at the next scheduled load."""

from __future__ import annotations

import dagster as dg

from ml_platform.defs import conventions
from ml_platform.spec import FilesSource, ModelSpec


def new_data_sensor(
    spec: ModelSpec, partitions: dg.TimeWindowPartitionsDefinition, lookback: int = 14
) -> dg.SensorDefinition | None:
    """A day's file appearing materializes that day; None for any other source (nothing to watch).

    Only the newest `lookback` days are looked at (older gaps are a backfill's business), and the run key carries
    the file's size, so a file rewritten with other contents loads again while an unchanged one does not."""
    source = spec.source
    if not isinstance(source, FilesSource) or "{date}" not in source.path:
        return None
    raw_key = conventions.key(spec, "raw")

    @dg.sensor(
        name=f"{spec.name}_new_data",
        job_name=conventions.data_job_name(spec),
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Materializes a day of {spec.name} when its file appears at {source.path}.",
    )
    def new_data(context: dg.SensorEvaluationContext):
        import fsspec

        keys = partitions.get_partition_keys()[-lookback:]
        done = context.instance.get_materialized_partitions(raw_key)
        requests = []
        for key in keys:
            if key in done:
                continue
            url = source.path.format(date=key[:10])
            fs, path = fsspec.core.url_to_fs(url, **source.storage_options)
            if fs.exists(path):
                requests.append(
                    dg.RunRequest(
                        run_key=f"new-data-{key}-{fs.info(path).get('size')}",
                        partition_key=key,
                        tags={
                            conventions.REASON_TAG: "new data",
                            conventions.TRIGGER_TAG: url,
                            **conventions.model_tags(spec),
                        },
                    )
                )
        return requests or dg.SkipReason(f"no new files among the last {lookback} partitions")

    return new_data
