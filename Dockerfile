# The project image: the code location served over gRPC (`dagster code-server`), the user-code image of the
# Docker or Kubernetes run launcher, and, with another command, every other service of the production stack
# (deploy/docker-compose.yaml: Dagster webserver and daemon, MLflow tracking server, the model endpoint).
# Build: docker build --network host -t ml-platform .
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 app
WORKDIR /opt/ml_platform

# Dependencies first (a layer that changes only with pyproject.toml), then the package itself.
COPY pyproject.toml README.md ./
RUN mkdir ml_platform && touch ml_platform/__init__.py \
 && pip install --no-cache-dir '.[production]' && pip uninstall -y ml_platform && rm -rf /root/.cache ml_platform
COPY ml_platform ./ml_platform
RUN pip install --no-cache-dir --no-deps . && rm -rf /root/.cache build

# Shared state of the stack (stored partitions, the prediction log, replay pins) and MLflow's served artifacts:
# created here, owned by the app user, so named volumes mounted there start with the right owner.
RUN mkdir -p /var/lib/ml_platform /var/lib/mlflow && chown app:app /var/lib/ml_platform /var/lib/mlflow

USER app
ENV ML_PLATFORM_HOME=/home/app/.ml_platform \
    DAGSTER_HOME=/home/app/.ml_platform/dagster \
    PYTHONUNBUFFERED=1
RUN mkdir -p "$DAGSTER_HOME"

EXPOSE 4000
CMD ["dagster", "code-server", "start", "--host", "0.0.0.0", "--port", "4000", "--module-name", "ml_platform.definitions", "--location-name", "ml_platform"]
