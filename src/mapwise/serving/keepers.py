"""The recommender in service, following its source: a registry alias or a bundle folder.

A background thread checks the alias every `serve.poll_seconds`; a new version is downloaded,
loaded and smoke-checked before it replaces the one serving. A version that does not load or fails
the smoke check is refused (and reported by `/model`) while the old one keeps answering; a registry
or download failure is only retried at the next check.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np

from mapwise.bundles.format import load_bundle
from mapwise.bundles.registry import CHAMPION, alias_version, client_at, download
from mapwise.bundles.runtime import query_scores
from mapwise.errors import MapwiseError
from mapwise.params import Params, RetrievalParams
from mapwise.serving.failures import first_line, reason
from mapwise.serving.recommendations import Recommender
from mapwise.tracking import tracking_uri

log = logging.getLogger(__name__)


class Source(Protocol):
    """Where models come from: `latest()` names the version to serve, `fetch()` brings its files."""

    name: str
    description: str

    def latest(self) -> str | None: ...

    def fetch(self, version: str) -> Path: ...


@dataclass
class FolderSource:
    """One bundle folder, served as is (e.g. baked into a container image)."""

    folder: Path

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def description(self) -> str:
        return "bundle folder"  # its path is the server's business

    def latest(self) -> str | None:
        return "local"

    def fetch(self, version: str) -> Path:
        return self.folder


@dataclass
class RegistrySource:
    """The version an alias points at in the MLflow registry."""

    uri: str
    model_name: str
    alias: str
    cache_dir: Path

    @property
    def name(self) -> str:
        return self.model_name

    @property
    def description(self) -> str:
        return f"models:/{self.model_name}@{self.alias}"

    def latest(self) -> str | None:
        return alias_version(client_at(self.uri), self.model_name, self.alias)

    def fetch(self, version: str) -> Path:
        return download(self.uri, self.model_name, version, self.cache_dir)


def source_from(params: Params, model: str | None = None, *, what: str = "serve.model") -> Source:
    """`model`: models:/<name>@<alias> or a bundle folder; default the champion of register.model_name."""
    model = model or params.serve.model or f"models:/{params.register.model_name}@{CHAMPION}"
    if model.startswith("models:/"):
        name, sep, alias = model.removeprefix("models:/").partition("@")
        if not sep or not name or not alias:
            raise MapwiseError(f"{what}: '{model}' must look like models:/<name>@<alias>")
        return RegistrySource(tracking_uri(params.tracking), name, alias, params.serve.cache_dir)
    if not Path(model).is_dir():
        raise MapwiseError(f"{what}: {model} is neither models:/<name>@<alias> nor a bundle folder")
    return FolderSource(Path(model))


@dataclass(frozen=True)
class Loaded:
    """A model in service."""

    recommender: Recommender
    version: str
    info: dict


@dataclass
class Keeper:
    """Holds the serving model and swaps in a new version only once it has loaded and passed a smoke check."""

    source: Source
    threads: int = 1
    retrieval: RetrievalParams = field(default_factory=RetrievalParams)
    current: Loaded | None = None
    refused: dict[str, str] = field(default_factory=dict)
    waiting: str = "no model checked yet"  # while nothing serves: what is missing (the last check's finding)

    def refresh(self) -> bool:
        """Load the source's latest version if it is new; True when the serving model changed.

        Registry and download errors propagate: nothing is decided, the next check tries again. A version
        whose files are here but do not load or fail the smoke check is refused for good (reason in `/model`).
        """
        try:
            version = self.source.latest()
        except Exception as err:
            self.waiting = f"{self.source.description} cannot be looked up ({reason(err)}); retrying"
            raise
        if version is None:
            self.waiting = f"no registered version has the alias: {self.source.description} names none yet"
            return False
        if version in self.refused or (self.current and self.current.version == version):
            return False
        try:
            folder = self.source.fetch(version)
        except Exception as err:
            self.waiting = f"version {version} of {self.source.description} could not be downloaded ({reason(err)}); retrying"
            raise
        try:
            bundle = load_bundle(folder, threads=self.threads)
            recommender = Recommender(bundle, self.retrieval)
            smoke_check(recommender)
        except Exception as err:  # noqa: BLE001  (a broken version: refused, the old one keeps serving)
            log.warning("refused model version %s: %s", version, first_line(err))  # the log may name paths
            self.refused[version] = reason(err)
            self.waiting = "every version found was refused"
            return False
        meta = bundle.metadata
        info = {
            "name": self.source.name, "source": self.source.description,
            "version": version, "model": meta.get("model"),
            "n_items": bundle.n_items, "max_len": bundle.max_len, "retrieval": recommender.retrieval,
            "lineage": meta.get("lineage", {}),
            "data_version": meta.get("lineage", {}).get("data_version"), "metrics": meta.get("metrics", {}),
            "loaded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self.current = Loaded(recommender, version, info)
        gc.unfreeze()  # the model replaced may now be collected
        gc.collect()
        gc.freeze()  # the model's many long-lived objects leave the collector's scans: steadier latency
        log.info("serving model version %s (%s)", version, meta.get("model"))
        return True

    def follow(self, every: float) -> threading.Thread:
        """Re-check the source every `every` seconds in a daemon thread."""

        def loop() -> None:
            while True:
                time.sleep(every)
                try:
                    self.refresh()
                except Exception as err:  # noqa: BLE001  (registry or download failed: keep serving, retry later)
                    log.warning("model check failed, retrying in %gs: %s", every, first_line(err))

        thread = threading.Thread(target=loop, name="mapwise-model-follow", daemon=True)
        thread.start()
        return thread



def smoke_check(rec: Recommender) -> None:
    """A model must score finitely and answer a known customer, a history and a cold start."""
    top = rec.popular[: min(5, rec.n_items)]
    scores = rec.score([top])
    if scores.shape != (1, rec.n_items + 1) or not np.isfinite(scores[0, 1:]).all():
        raise MapwiseError(f"smoke check: scores of shape {scores.shape} (expected {(1, rec.n_items + 1)}, all finite)")
    if rec.ann is not None:  # the query graph and item vectors must give the model's own scores
        worst = float(np.abs(query_scores(rec.infer([top]), rec.ann.vectors)[0, 1:] - scores[0, 1:]).max())
        if not worst <= 1e-3:
            raise MapwiseError(f"smoke check: query . item vectors differ from the model's scores by {worst:.3g}")
    k = min(10, rec.n_items)
    for customer in (next(iter(rec.customers), None), None):
        answer = rec.recommend(customer, k)
        if len(answer.items) != k:
            raise MapwiseError(f"smoke check: {len(answer.items)} items instead of {k}")
