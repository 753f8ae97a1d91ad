"""The Prefect event that says a batch arrived, and the trigger that starts the `retrain` deployment on it."""

from __future__ import annotations

import logging
import os

import httpx

from mapwise.errors import MapwiseError
from mapwise.params import OrchestrateParams

ARRIVED = "mapwise.batch.arrived"
RESOURCE_PREFIX = "mapwise.incoming."  # Prefect event resource ids: kept stable


def use_local_server(p: OrchestrateParams) -> str:
    """$PREFECT_API_URL, else the server `make up` starts; fails in one line if nothing answers there."""
    url = os.environ.setdefault("PREFECT_API_URL", f"http://127.0.0.1:{p.prefect_port}/api")
    try:
        httpx.get(f"{url.rstrip('/')}/health", timeout=5).raise_for_status()
    except httpx.HTTPError:
        raise MapwiseError(f"no Prefect server answers at {url}; start one with `make up` or set $PREFECT_API_URL") from None
    return url


def announce(path: str, source: str) -> None:
    """Emit ARRIVED for one file and wait until it is sent."""
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    sent = emit_event(event=ARRIVED, resource={"prefect.resource.id": f"{RESOURCE_PREFIX}{source}",
                                                "prefect.resource.name": path.rsplit("/", 1)[-1]},
                      payload={"path": path, "source": source})
    if sent is None:
        raise MapwiseError("Prefect is not set up to send events here (is $PREFECT_API_URL a server?)")
    logging.getLogger(EventsWorker.__name__).setLevel(logging.ERROR)  # not "still processing 1 item" while it sends
    EventsWorker.drain_all()


def arrival_trigger(params_file: str = "params.yaml"):
    """Start `retrain` for each ARRIVED event, with the event's file and source as parameters."""
    from prefect.events import DeploymentEventTrigger

    return DeploymentEventTrigger(
        name="batch arrived", expect={ARRIVED}, match={"prefect.resource.id": f"{RESOURCE_PREFIX}*"},
        parameters={"path": "{{ event.payload.path }}", "source": "{{ event.payload.source }}", "params_file": params_file},
    )
