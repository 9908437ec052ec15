#!/usr/bin/env bash
# The MLflow tracking server of the stack: PostgreSQL for runs, the registry and users; artifacts stored under
# /var/lib/mlflow and served by the server; MLflow's basic-auth app. The auth settings file is written here
# from the environment, so no password sits in a file of the repository or the image.
set -euo pipefail
db="postgresql+psycopg2://${ML_PLATFORM_POSTGRES_USER}:${ML_PLATFORM_POSTGRES_PASSWORD}@${ML_PLATFORM_BIND}:${ML_PLATFORM_POSTGRES_PORT}"
umask 077
export MLFLOW_AUTH_CONFIG_PATH=/tmp/mlflow_auth.ini
# MLflow's job runner (GenAI jobs; seven extra processes that each import MLflow) serves nothing the
# platform uses: off unless the operator turns it on.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"
cat > "$MLFLOW_AUTH_CONFIG_PATH" <<INI
[mlflow]
default_permission = READ
database_uri = ${db}/${ML_PLATFORM_MLFLOW_AUTH_DB}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
# A password check (PBKDF2) costs more than most requests it guards, and a training step makes dozens of
# requests: a checked login is trusted for a minute per worker (a password change reaches the other worker
# within that minute).
auth_cache_ttl_seconds = ${ML_PLATFORM_MLFLOW_AUTH_CACHE_S:-60}
INI
# Accounts first (the platform's service account, read-only people), then the server in the foreground.
python /opt/ml_platform/deploy/mlflow/accounts.py &
exec mlflow server --app-name basic-auth \
  --backend-store-uri "${db}/${ML_PLATFORM_MLFLOW_DB}" \
  --artifacts-destination /var/lib/mlflow/artifacts --serve-artifacts \
  --host "${ML_PLATFORM_BIND}" --port "${ML_PLATFORM_MLFLOW_PORT}" --workers "${ML_PLATFORM_MLFLOW_WORKERS:-2}"
