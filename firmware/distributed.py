"""Golden-model evaluation sharded over a Dask cluster.

:func:`golden_run` splits the samples of a test set into shards, runs every shard on the golden
model in a Dask worker and puts the results back in sample order. A sample's logits and counters
do not depend on which samples share its batch (the driver sends every feature, zeros included),
so the merged result equals a serial run bit for bit.

* ``workers=N`` starts a local cluster of N processes (one thread each) for the run;
  ``scheduler=ADDRESS`` uses an existing cluster instead (``tcp://host:8786``: any deployment,
  SSH, SLURM through dask-jobqueue, Kubernetes), which must have ``neuroloom`` installed.
* The image travels to every worker once (scattered), and each worker keeps the golden model it
  loaded for the next shard of the same run.
* The progress callback follows the futures as they complete.
* A worker that dies loses its shards to the scheduler, which runs them again on another worker
  (``allowed-failures``); a shard that raises is retried ``retries`` times, and if it still
  fails its samples are reported in :attr:`ShardedRun.failed`, never dropped silently.

Dask is imported only when a cluster is used (``pip install 'dask[distributed]'``, a
dependency of the package).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from neuroloom.contract.image import Image
from neuroloom.contract.transport import ARCH_COUNTERS

__all__ = ["ClusterError", "ShardedRun", "close_client", "golden_run", "open_client",
           "run_shard", "shards"]

#: seconds to reach an existing scheduler
CONNECT_TIMEOUT_S = 10


class ClusterError(RuntimeError):
    """No Dask cluster to run on (Dask missing, or the scheduler unreachable)."""

#: golden drivers kept in a worker process between shards: run key -> Driver
_LOADED: dict = {}


@dataclass
class ShardedRun:
    """The merged result of a sharded run: ``running`` (B, K, classes) integer logits,
    ``counters`` (cores, 4) summed over the samples, ``steps`` per sample, and the shards that
    failed (``(first sample, end sample, error)``; their logits are zero)."""
    running: np.ndarray
    counters: np.ndarray
    steps: int
    failed: list = field(default_factory=list)

    @property
    def predictions(self) -> np.ndarray:
        return self.running[:, -1].argmax(-1)


def shards(n: int, size: int) -> list[tuple[int, int]]:
    """``[first, end)`` sample ranges of at most ``size`` samples."""
    return [(i, min(n, i + size)) for i in range(0, n, max(1, size))]


def run_shard(key: str, image: Image, xq: np.ndarray, mode: str, batch: int):
    """Worker side: run the payloads ``xq`` (b, K, d_in) through ``image`` on the golden model
    (loaded once per worker and run key)."""
    from .driver import golden_driver

    drv = _LOADED.get(key)
    if drv is None:
        _LOADED.clear()                                    # one run at a time per worker
        drv = _LOADED[key] = golden_driver(batch)
        drv.load(image)
    res = drv.run(xq, mode=mode)
    return res.running, res.counters, res.steps


def open_client(workers: int | None = None, scheduler: str | None = None):
    """A ``distributed.Client``: on ``scheduler`` if given, else on a new local cluster of
    ``workers`` processes (closed with the client)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ClusterError("evaluation on a cluster needs Dask: pip install "
                           "'dask[distributed]'") from None
    if scheduler:
        try:
            return Client(scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as e:
            raise ClusterError(f"cannot reach the Dask scheduler at {scheduler} ({e}); start "
                               f"one with 'dask scheduler' and give the tcp://HOST:PORT it "
                               f"prints") from None
    cluster = LocalCluster(n_workers=max(1, int(workers or 1)), threads_per_worker=1,
                           processes=True, dashboard_address=None)
    client = Client(cluster)
    client._neuroloom_cluster = cluster                    # closed by close_client
    return client


def close_client(client) -> None:
    cluster = getattr(client, "_neuroloom_cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


def golden_run(image: Image, xq: np.ndarray, mode: str, *, client=None,
               workers: int | None = None, scheduler: str | None = None, batch: int = 64,
               shard: int | None = None, retries: int = 2,
               progress: Callable[[int], None] | None = None) -> ShardedRun:
    """Run the payloads ``xq`` (B, K, d_in) through ``image`` on the golden model, sharded over
    a Dask cluster (``client``, or one opened from ``workers``/``scheduler``).

    ``batch``: samples side by side in a worker's golden model; ``shard``: samples per task
    (default: ``batch``, smaller so that every worker gets at least two shards).
    """
    from distributed import as_completed

    B, K = xq.shape[0], xq.shape[1]
    own = client is None
    if own:
        client = open_client(workers, scheduler)
    try:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        size = shard or max(1, min(batch, -(-B // (2 * n_workers))))
        key = uuid.uuid4().hex
        img = client.scatter(image, broadcast=True)
        parts = shards(B, size)
        futures = {client.submit(run_shard, key, img, xq[a:b], mode, min(batch, size),
                                 retries=retries, pure=False, key=f"golden-{key}-{a}"): (a, b)
                   for a, b in parts}
        running = np.zeros((B, K, len(image.outputs)), dtype=np.int64)
        counters = np.zeros((image.cfg.num_cores, len(ARCH_COUNTERS)), dtype=np.int64)
        steps, failed = 0, []
        for fut in as_completed(futures):
            a, b = futures[fut]
            if fut.status != "finished":                   # erred, or cancelled
                try:
                    err = fut.exception()
                    why = f"{type(err).__name__}: {err}"
                except Exception as e:                     # a cancelled future has none
                    why = f"{fut.status} ({type(e).__name__})"
                failed.append((a, b, why))
            else:
                r, c, steps = fut.result()
                running[a:b], counters = r, counters + c
            if progress:
                progress(b - a)
        failed.sort()
        return ShardedRun(running, counters, steps, failed)
    finally:
        if own:
            close_client(client)
