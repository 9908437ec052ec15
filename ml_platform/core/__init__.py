"""Pure ML logic: sources, schemas, features. Nothing in here imports Dagster."""
