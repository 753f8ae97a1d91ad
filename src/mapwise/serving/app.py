"""The real-time service: FastAPI over onnxruntime, following the registry's `champion` alias.

A background thread checks the alias every `serve.poll_seconds`; a new version is downloaded,
loaded and smoke-checked before it replaces the one serving. A version that does not load or fails
the smoke check is refused (and reported by `/model`) while the old one keeps answering; a registry
or download failure is only retried at the next check. Requests are validated strictly, and every
error answers `{"error": "<one line>"}`, without server paths. Raw customer ids are pseudonymised
with the ingestion key on arrival and never logged. The service starts without a model or a key (on a
fresh clone the first pipeline run creates both) and answers 503 with the reason until it has both;
the key is looked for again on each request until found, and never created here.

Targeting models (propensity per task, uplift for the next best action; see `targeting`) are served
beside the recommender, each from its own source: `serve.targets` names them, or, when it is null,
every registered `mapwise-propensity-<task>` and `mapwise-uplift` with a `champion` alias is found
in the registry. They are loaded at startup and, for registry sources, followed on the same polling
as the recommender (the registry is searched again for new ones too); each is loaded, smoke-checked
and refused on its own, and none of them is needed for the recommender to serve (nor the reverse).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Protocol

import numpy as np
import orjson
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from mapwise.bundles.format import load_bundle
from mapwise.errors import MapwiseError, one_line
from mapwise.params import Params, RetrievalParams, ServeParams, load_params
from mapwise.privacy.forget import forgotten
from mapwise.privacy.pseudonym import KEY_ENV, load_key, pseudonym
from mapwise.serving.recommendations import Filters, Recommender
from mapwise.bundles.runtime import query_scores
from mapwise.serving.targeting import PROPENSITY, UPLIFT, TargetModel, propensity_model_name, uplift_model_name
from mapwise.bundles.registry import CHAMPION, alias_version, client_at, download
from mapwise.tracking import tracking_uri

log = logging.getLogger("mapwise.serving.app")
PARAMS_ENV, MODEL_ENV = "MAPWISE_PARAMS", "MAPWISE_MODEL"
_ID = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[!-~]+$")]  # printable, no spaces
_PATH = re.compile(r"(?<![\w:.~])/(?:[^\s/'\"(),;:]+/)+([^\s/'\"(),;:]*)")  # an absolute path: kept is its last part
NO_KEY = ("no pseudonymisation key yet: run the pipeline once (make demo, or the pipeline flow) to create it, "
          f"or set ${KEY_ENV} to the key used at ingestion")


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

    def refresh(self) -> bool:
        """Load the source's latest version if it is new; True when the serving model changed.

        Registry and download errors propagate: nothing is decided, the next check tries again. A version
        whose files are here but do not load or fail the smoke check is refused for good (reason in `/model`).
        """
        version = self.source.latest()
        if version is None or version in self.refused or (self.current and self.current.version == version):
            return False
        folder = self.source.fetch(version)
        try:
            bundle = load_bundle(folder, threads=self.threads)
            recommender = Recommender(bundle, self.retrieval)
            smoke_check(recommender)
        except Exception as err:  # noqa: BLE001  (a broken version: refused, the old one keeps serving)
            log.warning("refused model version %s: %s", version, _first_line(err))  # the log may name paths
            self.refused[version] = _PATH.sub(r"\1", _first_line(err))
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
                    log.warning("model check failed, retrying in %gs: %s", every, _first_line(err))

        thread = threading.Thread(target=loop, name="mapwise-model-follow", daemon=True)
        thread.start()
        return thread


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0][:300] if str(err).strip() else type(err).__name__




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
                log.warning("targeting models: registry search failed: %s", _first_line(err))
            else:
                self.sources = {**self.sources, **{k: v for k, v in found.items() if k not in self.sources}}
        changed = False
        for name, source in list(self.sources.items()):
            try:
                changed |= self._refresh(name, source)
                self.failed = {k: v for k, v in self.failed.items() if k != name}
            except Exception as err:  # noqa: BLE001  (registry or download failed: keep serving, retry later)
                log.warning("targeting model %s: check failed: %s", name, _first_line(err))
                self.failed = {**self.failed, name: _PATH.sub(r"\1", _first_line(err))}
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
            log.warning("targeting model %s: refused version %s: %s", name, version, _first_line(err))
            why = _PATH.sub(r"\1", _first_line(err))
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


@dataclass
class KeyWatch:
    """The pseudonymisation key, looked for until it exists: never created here (a fresh key would match no one)."""

    key_file: Path | None = None
    key: bytes | None = None
    missing: str = NO_KEY

    def get(self) -> bytes | None:
        """The key once found ($MAPWISE_HMAC_KEY or the key file, read again until then); None and `missing` before."""
        if self.key is None and self.key_file is not None:
            if not os.environ.get(KEY_ENV) and not self.key_file.exists():
                self.missing = NO_KEY
                return None
            try:
                self.key = load_key(self.key_file, create=False)
                log.info("pseudonymisation key found")
            except (MapwiseError, OSError) as err:  # too short, half-written, unreadable: told, and tried again
                self.missing = _PATH.sub(r"\1", _first_line(err))
        return self.key


@dataclass
class ForgetWatch:
    """The forget log (pseudonyms), read again whenever it changes: a forgotten customer is answered as an unknown one,
    even by a model trained before the request."""

    path: Path | None = None
    stamp: int | None = None
    ids: frozenset[str] = frozenset()

    def get(self) -> frozenset[str]:
        if self.path is None:
            return self.ids
        try:
            stamp = self.path.stat().st_mtime_ns
        except OSError:
            stamp = None
        if stamp != self.stamp:
            try:
                self.ids, self.stamp = forgotten(self.path), stamp
            except (MapwiseError, OSError) as err:  # half-written or unreadable: keep the last good list, say so
                log.warning("forget log not read: %s", _first_line(err))
        return self.ids

    def hide(self, pseudonyms: list[str]) -> list[str]:
        """The pseudonyms with forgotten ones blanked out (a blank matches no customer)."""
        gone = self.get()
        return [p if p not in gone else "" for p in pseudonyms] if gone else pseudonyms


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


def _request_models(p: ServeParams) -> tuple[type[BaseModel], type[BaseModel]]:
    item_list = Annotated[list[_ID], Field(max_length=p.max_list_items)]

    class RecommendationFilters(BaseModel):
        """Every given rule must hold for an item to be recommended."""

        model_config = ConfigDict(extra="forbid", strict=True)  # no "5" for 5, no true for 1, no "yes" for true
        categories: Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=64)]],
                              Field(max_length=p.max_list_items)] | None = None
        min_price: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
        max_price: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
        allow_items: item_list | None = Field(None, description="only these items")
        deny_items: item_list = Field([], description="never these items")

        @model_validator(mode="after")
        def _prices(self):
            if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
                raise ValueError("min_price is above max_price")
            return self

    class RecommendationRequest(BaseModel):
        """Who to recommend for, how many, and under which rules."""

        model_config = ConfigDict(extra="forbid", strict=True)
        customer_id: _ID = Field(description="the shop's own customer id (pseudonymised on arrival, never stored)")
        k: int = Field(10, ge=1, le=p.max_k)
        recent_items: Annotated[list[_ID], Field(max_length=p.max_recent_items)] = Field(
            [], description="items seen or bought in this session, oldest first")
        exclude_purchased: bool = False
        filters: RecommendationFilters | None = None

    return RecommendationRequest, RecommendationFilters


def _target_request_models(p: ServeParams) -> tuple[type[BaseModel], type[BaseModel]]:
    id_list = Annotated[list[_ID], Field(min_length=1, max_length=p.max_list_items)]
    row_list = Annotated[list[dict[str, Any]], Field(min_length=1, max_length=p.max_list_items)]

    class TargetRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        customer_ids: id_list | None = Field(None, description="the shop's own customer ids (pseudonymised on arrival, "
                                                             "never stored), looked up in the model's customer table")
        rows: row_list | None = Field(None, description="raw feature values, one object per row (names and types: "
                                                    "`features` of the model in /targets); a missing feature is missing")
        explain: bool = Field(False, description=f"add the top reasons (at most {p.max_explain_rows} rows)")

        @model_validator(mode="after")
        def _one_input(self):
            if (self.customer_ids is None) == (self.rows is None):
                raise ValueError("give exactly one of customer_ids and rows")
            n = len(self.customer_ids or self.rows or [])
            if self.explain and n > p.max_explain_rows:
                raise ValueError(f"explain is allowed for at most {p.max_explain_rows} rows per request ({n} given)")
            return self

    class PropensityRequest(TargetRequest):
        """Whose probability to score, for which task: customer ids or posted rows, exactly one of the two."""

        task: Annotated[str, StringConstraints(min_length=1, max_length=64)]

    class NextBestActionRequest(TargetRequest):
        """Who to choose an action for: customer ids or posted rows, exactly one of the two."""

    return PropensityRequest, NextBestActionRequest


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    reason: str = Field(description="model | repeat (bought before) | popular (cold start)")
    title: str | None
    category: str | None
    price: float | None


class RecommendationResponse(BaseModel):
    items: list[RecommendedItem]
    customer_known: bool
    strategy: str
    model: dict
    notes: list[str]


class Json(Response):
    """JSON rendered by orjson (numpy-free dicts of plain values)."""

    media_type = "application/json"

    def render(self, content: object) -> bytes:
        return orjson.dumps(content)


def strict_json(raw: bytes) -> object:
    """JSON as RFC 8259 has it: UTF-8, no NaN or Infinity, no duplicate keys; json.JSONDecodeError otherwise."""
    try:
        return json.loads(raw.decode(), object_pairs_hook=_unique_keys, parse_constant=_no_constant,
                          parse_float=_finite)
    except UnicodeDecodeError:
        raise json.JSONDecodeError("not UTF-8", "", 0) from None
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", "", 0) from None
    except json.JSONDecodeError:
        raise
    except ValueError:  # an integer past Python's digit limit
        raise json.JSONDecodeError("number too long", "", 0) from None


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    found = dict(pairs)
    if len(found) < len(pairs):
        raise json.JSONDecodeError("duplicate keys", "", 0)
    return found


def _no_constant(name: str) -> float:
    raise json.JSONDecodeError(f"{name} is not JSON", "", 0)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise json.JSONDecodeError("number out of range", "", 0)
    return value


class _StrictJsonRequest(Request):
    async def json(self) -> object:
        if not hasattr(self, "_json"):
            self._json = strict_json(await self.body())
        return self._json


class _StrictJsonRoute(APIRoute):
    """A route whose JSON body is read by `strict_json` (FastAPI turns its errors into a 422)."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(_StrictJsonRequest(request.scope, request.receive))

        return strict


def create_app(keeper: Keeper, key: bytes | KeyWatch, p: ServeParams, targets: TargetKeeper | None = None,
               forget: ForgetWatch | None = None) -> FastAPI:
    """The HTTP app around a keeper (already refreshed, or not ready yet), the key (or a watch for it), the
    targeting models (none when not given) and the forget log (none when not given)."""
    forget = forget or ForgetWatch()
    RecommendationRequest, _ = _request_models(p)
    PropensityRequest, NextBestActionRequest = _target_request_models(p)
    targets = targets if targets is not None else TargetKeeper()
    keys = key if isinstance(key, KeyWatch) else KeyWatch(key=key)
    app = FastAPI(title="mapwise recommendations", version="1", default_response_class=Json,
                  description="Real-time recommendations from the registry's champion model (onnxruntime).")
    app.router.route_class = _StrictJsonRoute
    app.add_middleware(BodyLimit, limit=p.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, err: RequestValidationError) -> Json:
        errors = err.errors()
        first = errors[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or "body"
        msg = {"extra_forbidden": "unknown field"}.get(first.get("type"), first.get("msg", "invalid"))
        if first.get("type") == "json_invalid":
            where, msg = "body", f"JSON decode error: {first.get('ctx', {}).get('error')}"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return Json({"error": one_line(f"{where}: {msg}", 400) + more}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, err: StarletteHTTPException) -> Json:  # routing's 404 and 405 too
        return Json({"error": one_line(str(err.detail), 400)}, status_code=err.status_code, headers=err.headers)

    @app.exception_handler(Exception)
    async def _crash(_: Request, err: Exception) -> Json:
        log.error("request failed: %s", type(err).__name__)
        return Json({"error": "internal error"}, status_code=500)

    def serving() -> tuple[Loaded, bytes]:
        """The model and the key; 503 naming what is missing until both are here."""
        current, key = keeper.current, keys.get()
        if current is None or key is None:
            refused = keeper.refused.copy()  # copied in one step: the follow thread may be adding to it
            missing = [] if key else [keys.missing]
            if current is None:
                missing.append("no model loaded yet" + "".join(f"; version {v} refused: {why}"
                                                               for v, why in refused.items()))
            raise HTTPException(503, "; ".join(missing))
        return current, key

    @app.get("/health", summary="The process is up")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready", summary="A model is loaded, the key is here: answering")
    def ready() -> dict:
        return {"ready": True, "version": serving()[0].version}

    @app.get("/model", summary="The model in service: version, metrics, lineage, refused versions and why")
    def model() -> dict:
        return {**serving()[0].info, "refused": keeper.refused,
                "targets": {name: t.info for name, t in targets.current.items()}}

    @app.get("/targets", summary="The targeting models in service: features, version, metrics; refused versions")
    def target_models() -> dict:
        return {"targets": {name: t.info for name, t in targets.current.items()}, "refused": targets.refused}

    batcher = Batcher()

    async def recommendations(body: RecommendationRequest) -> Json:  # type: ignore[valid-type]
        current, key = serving()
        rec = current.recommender
        f = body.filters
        filters = None if f is None else Filters(f.categories, f.min_price, f.max_price, f.allow_items, f.deny_items)
        who = forget.hide([pseudonym(body.customer_id.strip(), key)])[0]
        request = rec.prepare(who, body.k, recent_items=body.recent_items,
                              exclude_purchased=body.exclude_purchased, filters=filters)
        answer = rec.answer(request, await batcher.score(rec, request.history) if request.needs_model else None)
        return Json({
            "items": answer.items, "customer_known": answer.customer_known, "strategy": answer.strategy,
            "model": {"version": current.version, "name": current.info["model"]}, "notes": answer.notes,
        })

    recommendations.__annotations__["body"] = RecommendationRequest  # a local class: resolve it for FastAPI
    app.post("/recommendations", response_model=RecommendationResponse, summary="Top-k items for a customer")(
        recommendations)

    def target_inputs(model: TargetModel, body):  # noqa: ANN001, ANN202
        """The request's rows encoded for the model: customer ids pseudonymised and looked up, or posted rows."""
        if body.customer_ids is not None:
            key = keys.get()
            if key is None:
                raise HTTPException(503, keys.missing)
            ids = [cid.strip() for cid in body.customer_ids]
            return model.from_ids(body.customer_ids, forget.hide([pseudonym(cid, key) for cid in ids]))
        try:
            return model.from_rows(body.rows)
        except ValueError as err:
            raise HTTPException(422, f"body.{err}") from None

    def propensity(body: PropensityRequest) -> Json:  # type: ignore[valid-type]
        name = f"{PROPENSITY}/{body.task}"
        loaded = targets.current.get(name)
        if loaded is None:
            tasks = sorted({n.partition("/")[2] for n in (*targets.sources, *targets.current) if n.startswith(f"{PROPENSITY}/")})
            if name in targets.sources:
                raise HTTPException(503, targets.missing(name, f"propensity task '{body.task}'"))
            if not tasks:
                raise HTTPException(503, "no propensity model loaded: none named in serve.targets, nor registered as "
                                         f"<register.target_prefix>-propensity-<task> with a {CHAMPION} alias")
            raise HTTPException(404, f"unknown task '{body.task}'; tasks served: {', '.join(tasks)}")
        results = loaded.model.propensity(target_inputs(loaded.model, body), explain=body.explain)
        return Json({"task": body.task, "model": {"name": loaded.info["name"], "version": loaded.version},
                     "results": results})

    def next_best_action(body: NextBestActionRequest) -> Json:  # type: ignore[valid-type]
        loaded = targets.current.get(UPLIFT)
        if loaded is None:
            if UPLIFT in targets.sources:
                raise HTTPException(503, targets.missing(UPLIFT, "next best action"))
            raise HTTPException(503, "no uplift model loaded: none named in serve.targets, nor registered as "
                                     f"<register.target_prefix>-uplift with a {CHAMPION} alias")
        m = loaded.model
        results = m.next_best_action(target_inputs(m, body), explain=body.explain)
        return Json({"model": {"name": loaded.info["name"], "version": loaded.version}, "outcome": m.outcome,
                     "arms": m.arms, "contact_cost": m.contact_cost, "results": results})

    propensity.__annotations__["body"] = PropensityRequest
    next_best_action.__annotations__["body"] = NextBestActionRequest
    app.post("/scores/propensity", summary="Calibrated probability per customer or posted row, with reasons on request",
             description="Body: `task` and exactly one of `customer_ids` and `rows`; `explain` adds the top 5 "
                         "reasons (integrated gradients of the uncalibrated probability from the training mean row, "
                         "per feature).")(propensity)
    app.post("/next-best-action", summary="The treated arm with the largest uplift net of contact cost, or no_contact",
             description="Body: exactly one of `customer_ids` and `rows`; `explain` adds the top 5 reasons for "
                         "the best treated arm's uplift.")(next_best_action)
    return app


class Batcher:
    """Requests waiting on the model at the same moment share one onnxruntime call.

    Scoring runs on the event loop right after the requests that are ready have been parsed, so a
    lone request waits for nothing and a burst becomes one batch (the model costs far less per row
    in a batch than one call per request).
    """

    def __init__(self, max_batch: int = 64) -> None:
        self.max_batch = max_batch
        self.pending: list[tuple[Recommender, np.ndarray, asyncio.Future]] = []
        self.scheduled = False

    async def score(self, rec: Recommender, history: np.ndarray) -> np.ndarray:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending.append((rec, history, future))
        if not self.scheduled:
            self.scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        pending, self.pending, self.scheduled = self.pending, [], False
        for start in range(0, len(pending), self.max_batch):
            chunk = pending[start : start + self.max_batch]
            for rec in {id(r): r for r, _, _ in chunk}.values():  # normally one model; two around a swap
                mine = [(h, f) for r, h, f in chunk if r is rec]
                try:
                    scores = rec.infer([h for h, _ in mine])
                except Exception as err:  # noqa: BLE001  (fails these requests with 500, not the worker)
                    for _, future in mine:
                        future.set_exception(err)
                    continue
                for row, (_, future) in enumerate(mine):
                    future.set_result(scores[row])


class BodyLimit:
    """Refuse bodies over `limit` bytes with 413, whether or not Content-Length is declared."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await _too_large(send, self.limit)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413, f"body over {self.limit} bytes")
            return message

        return await self.app(scope, limited, send)


async def _too_large(send, limit: int) -> None:
    body = orjson.dumps({"error": f"body over {limit} bytes"})
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def build(params: Params, model: str | None = None, *, follow: bool = True) -> FastAPI:
    """The app for these params: key, model sources (recommender and targeting), first loads, and (for aliases)
    following them; ready or not."""
    key = KeyWatch(params.ingest.key_file)
    if key.get() is None:
        log.warning("not serving yet: %s", key.missing)
    keeper = Keeper(source_from(params, model), threads=params.serve.threads, retrieval=params.serve.retrieval)
    try:
        keeper.refresh()
    except Exception as err:  # noqa: BLE001  (registry not reachable yet: start unready, keep trying)
        log.warning("no model yet: %s", str(err).splitlines()[0][:300] if str(err) else err)
    if follow and isinstance(keeper.source, RegistrySource):
        keeper.follow(params.serve.poll_seconds)
    targets = targets_from(params)
    targets.refresh()
    if follow and targets.follows():
        targets.follow(params.serve.poll_seconds)
    app = create_app(keeper, key, params.serve, targets, ForgetWatch(params.privacy.forget_log))
    app.state.keeper, app.state.targets = keeper, targets
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn workers: params from $MAPWISE_PARAMS, model override from $MAPWISE_MODEL."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s [%(process)d] %(name)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)
    return build(load_params(Path(os.environ.get(PARAMS_ENV, "params.yaml"))), os.environ.get(MODEL_ENV) or None)
