"""What answers requests right now, and how it follows the registry's aliases.

Requests read the current slot once, so every response is answered (and logged) by exactly one version, even
while a reload swaps the slot.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from ml_platform.serving.loader import FolderSource, LoadedModel, ModelSource, RegistrySource
from ml_platform.serving.validation import Schema

if TYPE_CHECKING:
    from ml_platform.core.labels import Labels
    from ml_platform.core.model import Model
    from ml_platform.serving.config import ServeConfig
    from ml_platform.serving.prediction_log import LogPolicy

log = logging.getLogger("ml_platform.serving")


@dataclass(frozen=True)
class Slot:
    """The champion, with its request schema; the challenger when a rollout is on; and, otherwise, the previous
    champion while the champion is new (scored beside it and logged, never returned). `policy` says what the log
    keeps of a row. Before the first model is loaded there is no slot at all."""

    champion: LoadedModel
    schema: Schema
    policy: LogPolicy
    challenger: LoadedModel | None = None
    previous: LoadedModel | None = None
    allowed: frozenset[str] = frozenset()  # fields a request may carry besides the features (time, key)

    def describe(self, model: str, rollout: str) -> dict[str, Any]:
        """What `GET /v1/models/<model>` says: the champion's version, task, classes (classifiers), features,
        window and metrics."""
        manifest = self.champion.model.manifest
        return {
            "model": model,
            "version": self.champion.version,
            "task": manifest.get("task"),
            "target": manifest.get("target"),
            **_classes(self.champion.model.labels),
            "features": self.schema.describe(),
            "training_window": manifest.get("window", {}),
            "metrics": manifest.get("metrics", {}),
            "spec_digest": manifest.get("spec_digest"),
            "challenger": self.challenger.version if self.challenger else None,
            "previous_scored_beside": self.previous.version if self.previous else None,
            "rollout": rollout,
        }


def _classes(labels: Labels | None) -> dict[str, Any]:
    """A classifier's classes in code order, and a binary one's positive class (an old binary manifest has no
    `positive`: it is the second class); nothing for regression, so its description is unchanged."""
    if labels is None:
        return {}
    if labels.task == "binary":
        return {"classes": list(labels.classes), "positive": labels.positive}
    return {"classes": list(labels.classes)}


def source_for(config: ServeConfig) -> ModelSource:
    """The model folder when one is given, else the registry's aliases for the model."""
    if config.model_dir:
        return FolderSource(config.model_dir, config.model_version)
    return RegistrySource(config.model)


class RegistryUnreachable(RuntimeError):
    """The registry did not answer which versions the aliases name: keep serving what is loaded."""


class RegistryOutage(TypedDict):
    """`/ready`'s `registry` while the registry cannot be asked."""

    reachable: bool
    since: float
    error: str
    serving: str


@dataclass(frozen=True, slots=True)
class Outage:
    """The registry cannot be asked: since when (unix time of the first failed attempt), and the latest reason."""

    since: float
    error: str


class RegistryState:
    """Whether the last reload could ask the registry; while it cannot, since when and why (for `/ready`)."""

    def __init__(self) -> None:
        self.down: Outage | None = None

    def failed(self, error: Exception) -> None:
        """Keep when the outage began; say the latest reason (a server starting up refuses, then denies...)."""
        if self.down is None:
            log.warning("registry not reachable, keeping the loaded model: %s", error)
        self.down = Outage(self.down.since if self.down else time.time(), str(error))

    def answered(self) -> None:
        self.down = None

    def report(self, serving: bool) -> str | RegistryOutage:
        down = self.down
        if down is None:
            return "ok"
        return {
            "reachable": False,
            "since": round(down.since, 3),
            "error": down.error,
            "serving": "the loaded model" if serving else "nothing yet",
        }


async def next_slot(
    current: Slot | None, source: ModelSource, config: ServeConfig, policy_of: Callable[[Model], LogPolicy]
) -> Slot | None:
    """The slot the aliases ask for now (`current` is None before the first model), or None when nothing changed;
    `RegistryUnreachable` when the registry cannot be asked. `policy_of(model)` builds the log policy of a
    champion."""
    try:
        champion_version = await asyncio.to_thread(source.version, "champion")
        # live traffic reaches a challenger only once it has passed its offline gates
        challenger_version = (
            await asyncio.to_thread(source.version, "challenger", True) if config.rollout_mode != "none" else None
        )
        if challenger_version == champion_version:  # a promotion between its two alias moves: no challenger
            challenger_version = None
        previous_version = (
            await asyncio.to_thread(source.previous_beside, champion_version, config.previous_window_s)
            if challenger_version is None and config.previous_window_s > 0
            else None
        )
    except Exception as error:
        raise RegistryUnreachable(
            f"{type(error).__name__}: {str(error).splitlines()[0][:300] if str(error) else ''}"
        ) from error
    changed = current is None or (
        champion_version != current.champion.version
        or challenger_version != _version(current.challenger)
        or previous_version != _version(current.previous)
    )
    if not changed or champion_version is None:
        return None
    loaded = (
        [m for m in (current.champion, current.challenger, current.previous) if m is not None]
        if current is not None
        else []
    )

    async def load(version: str) -> LoadedModel:
        reuse = next((m for m in loaded if m.version == version), None)
        return reuse if reuse is not None else await asyncio.to_thread(source.load, version)

    champion = await load(champion_version)
    challenger = await load(challenger_version) if challenger_version else None
    previous = await load(previous_version) if previous_version and previous_version != champion_version else None
    log.info(
        "serving %s v%s%s%s",
        config.model,
        champion.version,
        f" with challenger v{challenger.version} ({config.rollout_mode})" if challenger else "",
        f", previous v{previous.version} scored beside it" if previous else "",
    )
    policy = policy_of(champion.model)
    return Slot(
        champion,
        Schema.of(champion.model),
        policy,
        challenger=challenger,
        previous=previous,
        allowed=frozenset(policy.fields),
    )


def _version(model: LoadedModel | None) -> str | None:
    return model.version if model else None
