"""Where ingest maps its partitions: in this process, or on a Dask cluster (`dask.distributed`).

Partitions are independent (see `ingest.Partition`), so a cluster only changes where they are mapped and
checked, never the result. `ingest.dask.address: null` starts a `LocalCluster` of worker processes on this
machine for the stage's duration; an address (`tcp://scheduler:8786`) uses a running cluster, whose workers
need the same mapwise version installed. The driver streams each file and sends the chunks' bytes, so
workers need no access to the raw files; the pseudonymisation key travels with the tasks (use TLS on a
shared cluster: `distributed.comm.require-encryption`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager

from mapwise.errors import MapwiseError
from mapwise.params import DaskParams


@contextmanager
def partition_executor(p: DaskParams | None) -> Iterator[Executor | None]:
    """A concurrent.futures executor on the Dask cluster `p` describes (None: map partitions in this process)."""
    if p is None:
        yield None
        return
    with _client(p) as client, warnings.catch_warnings():
        # Each task carries its chunk's bytes (chunk_mb) on purpose: workers need no access to the raw files.
        warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
        yield client.get_executor(pure=False)


@contextmanager
def _client(p: DaskParams):
    """A Dask client of the scheduler at `p.address`, or of a LocalCluster started for the block."""
    import logging

    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)  # worker start/stop chatter; failures still raise
    if p.address:
        try:
            client = Client(p.address, timeout=p.connect_timeout_s)
        except (OSError, TimeoutError) as err:
            raise MapwiseError(f"ingest.dask.address: no Dask scheduler answered at {p.address} ({err})") from None
        with client:
            yield client
        return
    with (LocalCluster(n_workers=p.workers, threads_per_worker=p.threads_per_worker, processes=True,
                       dashboard_address=None, memory_limit=p.memory_limit) as cluster,
          Client(cluster) as client):
        yield client


def in_flight(executor: Executor | None) -> int:
    """How many partitions to keep submitted at once: enough to keep every worker thread busy while the next
    chunk is read, few enough that the chunks waiting stay a small, fixed multiple of `chunk_mb`."""
    if executor is None:
        return 1
    client = getattr(executor, "_client", None)
    threads = sum(client.nthreads().values()) if client is not None else 2
    return max(2, 2 * threads)
