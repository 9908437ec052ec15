#!/usr/bin/env bash
# First start of PostgreSQL: one database per store (Dagster's runs, events and schedules; MLflow's tracking
# store; MLflow's users and permissions), all owned by the superuser the stack connects as.
set -euo pipefail
for db in "${ML_PLATFORM_MLFLOW_DB:-mlflow}" "${ML_PLATFORM_MLFLOW_AUTH_DB:-mlflow_auth}"; do
  psql -v ON_ERROR_STOP=1 -q --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    -c "CREATE DATABASE \"$db\""
done
