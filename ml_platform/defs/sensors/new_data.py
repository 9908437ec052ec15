"""New data: for a `files` source with one file per day, a day's file appearing materializes that day, so a
day is loaded when it lands rather than at the next scheduled load."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from ml_platform.defs import conventions
from ml_platform.defs.sensors.per_model import Looked, Watched, look_at_each
from ml_platform.spec import FilesSource


def daily_files(model: Watched) -> FilesSource | None:
    """The model's source when it is one file per day (`{date}` in a `files` source's path), else None."""
    source = model.spec.source
    return source if isinstance(source, FilesSource) and "{date}" in source.path else None


def new_data_sensor(models: Sequence[Watched], lookback: int = 14) -> dg.SensorDefinition | None:
    """A day's file appearing materializes that day, for every model whose source is one file per day; None
    when no model's is (nothing to watch).

    Only the newest `lookback` days are looked at (older gaps are a backfill's business), and the run key carries
    the model, the day and the file's size, so a file rewritten with other contents loads again while an
    unchanged one does not."""
    sources = {model.name: source for model in models if (source := daily_files(model)) is not None}
    watching = [model for model in models if model.name in sources]
    if not watching:
        return None

    @dg.sensor(
        name="new_data",
        jobs=[model.job(conventions.data_job_name(model.spec)) for model in watching],
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"For each model with one file per day ({len(watching)}): materializes a day through "
        "<model>_data when its file appears.",
    )
    def new_data(context: dg.SensorEvaluationContext):
        return look_at_each(
            context, watching, lambda model, _cursor: _new_files(context, model, sources[model.name], lookback)
        )

    return new_data


def _new_files(context: dg.SensorEvaluationContext, model: Watched, source: FilesSource, lookback: int) -> Looked:
    """The newest `lookback` days of one model whose file is there but whose `raw` is not."""
    import fsspec

    spec = model.spec
    done = context.instance.get_materialized_partitions(conventions.key(spec, "raw"))
    requests = []
    for key in model.data.get_partition_keys()[-lookback:]:
        if key in done:
            continue
        url = source.path.format(date=key[:10])
        fs, path = fsspec.core.url_to_fs(url, **source.storage_options)
        if fs.exists(path):
            requests.append(
                dg.RunRequest(
                    run_key=f"{spec.name}-new-data-{key}-{fs.info(path).get('size')}",
                    job_name=conventions.data_job_name(spec),
                    partition_key=key,
                    tags={
                        conventions.REASON_TAG: "new data",
                        conventions.TRIGGER_TAG: url,
                        **conventions.model_tags(spec),
                    },
                )
            )
    if requests:
        return Looked(
            None, f"{len(requests)} new file(s): {', '.join(r.partition_key or '' for r in requests)}", requests
        )
    return Looked(None, f"no new files among the last {lookback} partitions")
