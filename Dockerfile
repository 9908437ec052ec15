# The project image: the code location served over gRPC (`dagster code-server`), usable as the user-code
# image of a Docker or Kubernetes run launcher. Build: docker build --network host -t ml-platform .
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 app
WORKDIR /opt/ml_platform

COPY pyproject.toml README.md ./
COPY ml_platform ./ml_platform
RUN pip install --no-cache-dir . && rm -rf /root/.cache

USER app
ENV ML_PLATFORM_HOME=/home/app/.ml_platform \
    DAGSTER_HOME=/home/app/.ml_platform/dagster \
    PYTHONUNBUFFERED=1
RUN mkdir -p "$DAGSTER_HOME"

EXPOSE 4000
CMD ["dagster", "code-server", "start", "--host", "0.0.0.0", "--port", "4000", "--module-name", "ml_platform.definitions", "--location-name", "ml_platform"]
