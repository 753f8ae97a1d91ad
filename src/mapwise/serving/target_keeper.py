"""The targeting models in service (propensity per task, uplift for the next best action; see `targeting`).

Each is served beside the recommender from its own source: `serve.targets` names them, or, when it
is null, every registered `mapwise-propensity-<task>` and `mapwise-uplift` with a `champion` alias is
found in the registry. They are loaded at startup and, for registry sources, followed on the same
polling as the recommender (the registry is searched again for new ones too); each is loaded,
smoke-checked and refused on its own, and none of them is needed for the recommender to serve (nor
the reverse).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from mapwise.bundles.registry import CHAMPION, client_at
from mapwise.errors import MapwiseError
from mapwise.params import Params
from mapwise.serving.failures import first_line, reason
from mapwise.serving.keepers import RegistrySource, Source, source_from
from mapwise.serving.targeting import PROPENSITY, UPLIFT, TargetModel, propensity_model_name, uplift_model_name
from mapwise.tracking import tracking_uri

log = logging.getLogger(__name__)


def target_endpoint(name: str) -> str:
    """A serve.targets key as the endpoint it feeds: 'uplift', or 'propensity/<task>' (a bare name is a task)."""
    return name if name == UPLIFT or name.startswith(f"{PROPENSITY}/") else f"{PROPENSITY}/{name}"


@dataclass(frozen=True)
class LoadedTarget:
    """A targeting model in service."""

    model: TargetModel
    version: str
    info: dict


@dataclass
class TargetKeeper:
    """The targeting models, one per endpoint ('propensity/<task>', 'uplift'), each loaded like the recommender:
    a new version replaces the one serving only once it has loaded and passed its smoke check.

    `discover` (when given) is asked for sources at every refresh: endpoints it finds are added (never removed).
    The dicts are replaced whole on change, never changed in place: request threads read them unlocked.
    """

    sources: dict[str, Source] = field(default_factory=dict)
    discover: Callable[[], dict[str, Source]] | None = None
    threads: int = 1
    current: dict[str, LoadedTarget] = field(default_factory=dict)
    refused: dict[str, dict[str, str]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # the last registry or download failure, per endpoint

    def refresh(self) -> bool:
        """Find sources (if discovering), then load each endpoint's latest version if new; True when any changed.

        A registry or download failure is logged and kept for the 503 message; the next refresh tries again.
        """
        if self.discover is not None:
            try:
                found = self.discover()
            except Exception as err:  # noqa: BLE001  (no registry yet: no targeting models, retried later)
                log.warning("targeting models: registry search failed: %s", first_line(err))
            else:
                self.sources = {**self.sources, **{k: v for k, v in found.items() if k not in self.sources}}
        changed = False
        for name, source in list(self.sources.items()):
            try:
                changed |= self._refresh(name, source)
                self.failed = {k: v for k, v in self.failed.items() if k != name}
            except Exception as err:  # noqa: BLE001  (registry or download failed: keep serving, retry later)
                log.warning("targeting model %s: check failed: %s", name, first_line(err))
                self.failed = {**self.failed, name: reason(err)}
        return changed

    def _refresh(self, name: str, source: Source) -> bool:
        version = source.latest()
        serving = self.current.get(name)
        if version is None or version in self.refused.get(name, {}) or (serving and serving.version == version):
            return False
        folder = source.fetch(version)
        expected = UPLIFT if name == UPLIFT else PROPENSITY
        try:
            model = TargetModel(folder, threads=self.threads)
            if model.kind != expected:
                raise MapwiseError(f"a {model.kind} bundle where a {expected} model is expected")
        except Exception as err:  # noqa: BLE001  (a broken version: refused, the old one keeps serving)
            log.warning("targeting model %s: refused version %s: %s", name, version, first_line(err))
            why = reason(err)
            self.refused = {**self.refused, name: {**self.refused.get(name, {}), version: why}}
            return False
        info = {"endpoint": name, "name": source.name, "source": source.description, "version": version,
                **model.info(), "loaded_at": datetime.now(UTC).isoformat(timespec="seconds")}
        self.current = {**self.current, name: LoadedTarget(model, version, info)}
        log.info("serving targeting model %s version %s", name, version)
        return True

    def follows(self) -> bool:
        """Whether anything can change: a registry to search, or a registry source to follow."""
        return self.discover is not None or any(isinstance(s, RegistrySource) for s in self.sources.values())

    def follow(self, every: float) -> threading.Thread:
        """Refresh every `every` seconds in a daemon thread."""

        def loop() -> None:
            while True:
                time.sleep(every)
                self.refresh()  # catches its own failures

        thread = threading.Thread(target=loop, name="mapwise-targets-follow", daemon=True)
        thread.start()
        return thread

    def missing(self, name: str, what: str) -> str:
        """Why `name` is not served yet, for a 503."""
        why = [f"{what}: no model loaded yet"]
        why += [f"version {v} refused: {r}" for v, r in self.refused.get(name, {}).items()]
        if name in self.failed:
            why.append(f"last check failed: {self.failed[name]}")
        return "; ".join(why)


def discover_targets(uri: str, cache_dir: Path, prefix: str = "mapwise") -> dict[str, Source]:
    """Registered `<prefix>-propensity-<task>` and `<prefix>-uplift` models with a champion alias, by endpoint.

    A SQLite registry that does not exist yet holds none (and is not created here).
    """
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return {}
    registry = client_at(uri)
    found: dict[str, Source] = {}
    token = None
    while True:
        page = registry.search_registered_models(filter_string=f"name LIKE '{prefix}-%'", page_token=token)
        for model in page:
            if CHAMPION not in (model.aliases or {}):
                continue
            name = model.name
            task = name.removeprefix(propensity_model_name(prefix, ""))
            if name == uplift_model_name(prefix):
                found[UPLIFT] = RegistrySource(uri, name, CHAMPION, cache_dir)
            elif task != name and task:
                found[f"{PROPENSITY}/{task}"] = RegistrySource(uri, name, CHAMPION, cache_dir)
        token = page.token
        if not token:
            return found


def targets_from(params: Params) -> TargetKeeper:
    """The targeting models the params name (serve.targets), or a keeper that discovers them in the registry."""
    s = params.serve
    if s.targets is not None:
        sources = {target_endpoint(k): source_from(params, ref, what=f"serve.targets.{k}") for k, ref in s.targets.items()}
        return TargetKeeper(sources, threads=s.threads)
    uri, cache = tracking_uri(params.tracking), s.cache_dir
    prefix = params.register.target_prefix
    return TargetKeeper(discover=lambda: discover_targets(uri, cache, prefix), threads=s.threads)
