"""Where a spec with `training.engine: dask` does its work: the scheduler a deployment names
(ML_PLATFORM_DASK_ADDRESS), or else a local cluster sized to this machine, started once per process and shared
by the steps of a run.

The errors a user meets are raised here, each naming what to change: a scheduler that does not answer (its
address and the variable), a worker whose memory limit cannot hold one stored partition (the partition, both
sizes, the setting), and workers that died under a computation.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from distributed import Client, LocalCluster

T = TypeVar("T")

ADDRESS_ENV = "ML_PLATFORM_DASK_ADDRESS"
WORKERS_ENV = "ML_PLATFORM_DASK_WORKERS"
MEMORY_ENV = "ML_PLATFORM_DASK_MEMORY_LIMIT"
# A partition is read, encoded and copied into LightGBM's dataset on one worker: about three times its size.
PARTITION_MEMORY_FACTOR = 3


class ClusterError(RuntimeError):
    """The Dask cluster cannot do the work; the message names the setting to change."""


@dataclass(frozen=True)
class ClusterSettings:
    """The scheduler to use (None: a local cluster) and the local cluster's size."""

    address: str | None = None
    n_workers: int | None = None  # local cluster: default one per core
    memory_limit: str | None = None  # local cluster, per worker: default the machine's memory shared out
    connect_timeout_s: float = 10.0

    @classmethod
    def from_env(cls) -> ClusterSettings:
        workers = os.environ.get(WORKERS_ENV)
        return cls(
            address=os.environ.get(ADDRESS_ENV) or None,
            n_workers=int(workers) if workers else None,
            memory_limit=os.environ.get(MEMORY_ENV) or None,
        )


_LOCAL: dict[tuple[int | None, str | None], LocalCluster] = {}
_LOCK = threading.Lock()


def local_cluster(settings: ClusterSettings) -> LocalCluster:
    """This process's local cluster for these settings (started on first use, closed when the process exits):
    one single-threaded worker process per core, each with its share of the machine's memory."""
    from distributed import LocalCluster

    key = (settings.n_workers, settings.memory_limit)
    with _LOCK:
        cluster = _LOCAL.get(key)
        if cluster is None or getattr(cluster, "status", None) is None or cluster.status.name != "running":
            cluster = LocalCluster(
                n_workers=settings.n_workers or os.cpu_count() or 1,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
                memory_limit=settings.memory_limit or "auto",
            )
            _LOCAL[key] = cluster
    return cluster


def connect(settings: ClusterSettings) -> Client:
    """A client of the named scheduler, or of the local cluster; set as the process's default, so Dask
    collections and lightgbm.dask compute on it until it is closed."""
    from distributed import Client

    if not settings.address:
        return Client(local_cluster(settings), set_as_default=True)
    try:
        return Client(settings.address, timeout=settings.connect_timeout_s, set_as_default=True)
    except (OSError, TimeoutError, ValueError) as error:
        raise ClusterError(
            f"the Dask scheduler at {settings.address!r} ({ADDRESS_ENV}) did not answer within "
            f"{settings.connect_timeout_s:g} s ({type(error).__name__}: {error}). Start the scheduler and its "
            f"workers, fix {ADDRESS_ENV}, or unset it to train on a local cluster"
        ) from None


def dashboard_link(client: Client) -> str | None:
    try:
        return client.dashboard_link or None
    except Exception:  # a scheduler without the dashboard service
        return None


def workers_of(client: Client) -> dict[str, dict[str, Any]]:
    """Each worker's record (memory limit, threads, ...) by address, asked of the scheduler now.
    Not `Client.scheduler_info()`: it refreshes a cache and returns it, and the client's own periodic refresh
    writes that cache without the workers; read back between the two, it said every worker had left (a
    training that lost none failed so)."""
    identity: dict[str, Any] = client.sync(client.scheduler.identity, n_workers=-1)
    return dict(identity["workers"])


def worker_memory(client: Client) -> dict[str, int]:
    """Each worker's memory limit in bytes (0: none)."""
    return {address: int(info.get("memory_limit") or 0) for address, info in workers_of(client).items()}


def check_partition_memory(client: Client, partition_bytes: dict[str, int]) -> None:
    """Refuse before any work when the largest stored partition cannot fit a worker: the nanny would kill the
    worker over and over, and Dask would give up with a KilledWorker that does not say why."""
    limits = [limit for limit in worker_memory(client).values() if limit]
    if not limits or not partition_bytes:
        return
    name, size = max(partition_bytes.items(), key=lambda item: item[1])
    needed = size * PARTITION_MEMORY_FACTOR
    if needed > min(limits):
        raise ClusterError(
            f"partition {name} holds about {_mb(size)} in memory and a worker needs about {_mb(needed)} to "
            f"process it, but the smallest Dask worker may use {_mb(min(limits))}. Give the workers more memory "
            f"({MEMORY_ENV} for the local cluster, `dask worker --memory-limit` on a cluster) or store smaller "
            "partitions (partitions.cadence: hourly)"
        )


def explain_lost_workers(error: BaseException) -> ClusterError:
    """A computation whose workers kept dying, with the likely causes and what to change."""
    return ClusterError(
        f"Dask workers died while computing ({type(error).__name__}: {str(error).splitlines()[0][:300]}). "
        f"The usual cause is a worker's memory limit: raise it ({MEMORY_ENV}, or `dask worker --memory-limit`), "
        "add workers, or store smaller partitions; the workers' logs (the Dask dashboard) say which"
    )


def _mb(size: float) -> str:
    return f"{size / 2**20:,.0f} MB" if size >= 2**20 else f"{size / 1024:,.0f} KB"


def watched(client: Client, fit: Callable[[], T]) -> T:
    """Run `fit` while watching the workers. When one disappears (killed, out of memory), the fit fails with a
    ClusterError at once, and the workers that took part are restarted: lightgbm.dask would otherwise wait for
    the lost worker forever, and the others would stay blocked in LightGBM's network wait (a training fit on
    lightgbm.dask is what this watches)."""
    workers = set(worker_memory(client))
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = fit()
        except BaseException as error:  # handed to the caller's thread
            outcome["error"] = error

    thread = threading.Thread(target=run, name="lightgbm-dask-fit", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.5)
        lost = workers - set(worker_memory(client))
        if lost:
            raise _lost_during_training(client, workers, lost)
    if "error" in outcome:
        # A peer's death often surfaces first as LightGBM's socket error on a surviving worker.
        lost = workers - set(_workers_after_a_moment(client))
        if lost:
            raise _lost_during_training(client, workers, lost) from None
        from distributed import KilledWorker

        if isinstance(outcome["error"], KilledWorker):
            raise explain_lost_workers(outcome["error"]) from None
        raise outcome["error"]
    value: T = outcome["value"]
    return value


def _workers_after_a_moment(client: Client) -> list[str]:
    """The workers still there once the scheduler has had a moment to notice a death (a failed fit returns
    before the scheduler has removed the dead worker)."""
    time.sleep(1.0)
    return list(worker_memory(client))


def _lost_during_training(client: Client, workers: set[str], lost: set[str]) -> ClusterError:
    """The workers that took part and survived are restarted, so none stays blocked in LightGBM's network
    wait; the error says which left and what to change."""
    with contextlib.suppress(Exception):
        client.restart_workers(sorted(workers - lost), timeout=60, raise_for_error=False)
    return ClusterError(
        f"Dask worker(s) {', '.join(sorted(lost))} left the cluster during training, so the model was not "
        "trained and nothing was registered; the other workers that took part were restarted. If a worker ran "
        "out of memory, give workers more (ML_PLATFORM_DASK_MEMORY_LIMIT, or `dask worker --memory-limit`) or "
        "add workers"
    )


def killed_workers_explained(function: Callable[..., T], *args: Any) -> T:
    """Run `function(*args)`; workers that kept dying under it become a ClusterError that says what to change."""
    from distributed import KilledWorker

    try:
        return function(*args)
    except KilledWorker as error:
        raise explain_lost_workers(error) from None
