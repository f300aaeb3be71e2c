"""Dask clients: a LocalCluster by default, an existing cluster by address, or a batch queue.

No home-made job system: every parallel sweep submits plain functions to the client returned
here, so the same code runs on a laptop, a workstation or a SLURM cluster.
"""

from __future__ import annotations

from typing import Any

from cortexmap.errors import CortexmapError


def get_client(
    scheduler: str | None = None, n_workers: int | None = None, **cluster_kwargs: Any
):
    """Return a ``dask.distributed.Client``.

    scheduler: None -> LocalCluster with ``n_workers`` processes (default: CPU count, one thread
    each); "tcp://host:port" -> connect to a running scheduler; "slurm" / "pbs" / "sge" -> a
    dask-jobqueue cluster scaled to ``n_workers`` jobs (``cluster_kwargs`` go to the cluster,
    e.g. ``cores``, ``memory``, ``queue``).
    """
    from dask.distributed import Client, LocalCluster

    if scheduler is None or scheduler == "local":
        cluster = LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True,
            dashboard_address=None, **cluster_kwargs,
        )
        return Client(cluster)
    if scheduler in {"slurm", "pbs", "sge"}:
        try:
            import dask_jobqueue
        except ImportError as exc:
            raise CortexmapError(
                "Batch-queue clusters need dask-jobqueue: pip install 'cortexmap[cluster]'."
            ) from exc
        cls = {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster,
               "sge": dask_jobqueue.SGECluster}[scheduler]
        cluster = cls(**({"cores": 1, "memory": "4GB"} | cluster_kwargs))
        cluster.scale(jobs=n_workers or 1)
        return Client(cluster)
    if "://" not in scheduler:
        raise CortexmapError(
            f"Scheduler {scheduler!r} is not understood; use none (local), an address such as "
            "tcp://10.0.0.5:8786, or one of slurm, pbs, sge."
        )
    return Client(scheduler)


def close_client(client) -> None:
    """Close a client from :func:`get_client` and the cluster it started, if any.

    ``Client.close`` leaves a LocalCluster (or batch jobs) running; a client connected to an
    existing scheduler by address has no ``cluster`` and only disconnects.
    """
    if client is None:
        return
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()
