"""The model spec: one YAML file per model, parsed into typed, validated objects. No Dagster import here.

`sections` is the schema (ModelSpec and its sections), `rules` the checks across fields, `loading` reading
files and rendering every mistake with file, field, found and allowed. The `source:` section's models live
with their sources in `ml_platform.core.sources`; they are re-exported here.
"""

from ml_platform.core.sources import FilesSource, Nycflights13Source, Source, SqlSource
from ml_platform.fields import Duration, StrictModel, parse_duration
from ml_platform.spec.loading import BUNDLED_SPECS, SPECS_ENV, SpecError, load_spec, load_specs, spec_files
from ml_platform.spec.sections import (
    ColumnExpectation,
    DerivedFeature,
    Drift,
    Expectations,
    Fairness,
    Features,
    Freshness,
    Gates,
    Limits,
    ModelSpec,
    Monitoring,
    Partitions,
    Performance,
    PredictionLogPolicy,
    Rollout,
    Schedule,
    Serving,
    Target,
    Training,
    Tuning,
)

__all__ = [
    "BUNDLED_SPECS",
    "SPECS_ENV",
    "ColumnExpectation",
    "DerivedFeature",
    "Drift",
    "Duration",
    "Expectations",
    "Fairness",
    "Features",
    "FilesSource",
    "Freshness",
    "Gates",
    "Limits",
    "ModelSpec",
    "Monitoring",
    "Nycflights13Source",
    "Partitions",
    "Performance",
    "PredictionLogPolicy",
    "Rollout",
    "Schedule",
    "Serving",
    "Source",
    "SpecError",
    "SqlSource",
    "StrictModel",
    "Target",
    "Training",
    "Tuning",
    "load_spec",
    "load_specs",
    "parse_duration",
    "spec_files",
]
