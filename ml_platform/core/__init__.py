"""The ML logic behind every asset: nothing in here imports Dagster, so each step runs and is tested on its own.

Data sources and their spec configs, the data contract (schema), data versions, features, training,
evaluation, promotion gates, the model registry, drift, live performance, deployment, model cards and alerts.
"""
