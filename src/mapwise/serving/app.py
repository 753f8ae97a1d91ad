"""The real-time service: FastAPI over onnxruntime, serving the recommender and the targeting models.

Requests are validated strictly, and every error answers `{"error": "<one line>"}`, without server
paths. Raw customer ids are pseudonymised with the ingestion key on arrival and never logged. The
service starts without a model or a key and answers 503 with the reason until it has both. Models are
kept and followed by `keepers` (the recommender) and `target_keeper` (targeting models), the key and
the forget log by `watches`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from mapwise.bundles.registry import CHAMPION
from mapwise.errors import one_line
from mapwise.params import Params, ServeParams, load_params
from mapwise.privacy.pseudonym import pseudonym, pseudonyms
from mapwise.serving.batcher import Batcher
from mapwise.serving.docs_pages import docs_pages
from mapwise.serving.http_limits import BodyLimit
from mapwise.serving.keepers import Keeper, Loaded, RegistrySource, source_from
from mapwise.serving.recommendations import Filters
from mapwise.serving.schemas import (
    Health,
    ModelInService,
    NextBestActionResponse,
    PropensityResponse,
    Ready,
    RecommendationResponse,
    TargetsInService,
    errors,
    request_models,
    target_request_models,
)
from mapwise.serving.json_route import Json, StrictJsonRoute
from mapwise.serving.target_keeper import TargetKeeper, targets_from
from mapwise.serving.targeting import PROPENSITY, UPLIFT, TargetModel
from mapwise.serving.watches import ForgetWatch, KeyWatch

log = logging.getLogger(__name__)
PARAMS_ENV, MODEL_ENV = "MAPWISE_PARAMS", "MAPWISE_MODEL"
ALWAYS = (408, 431, 500)  # any request: too slow to arrive, head too large, a failure of ours
BODY = (413, 422)  # a request with a body: too large, not valid


def create_app(keeper: Keeper, key: bytes | KeyWatch, p: ServeParams, targets: TargetKeeper | None = None,
               forget: ForgetWatch | None = None) -> FastAPI:
    """The HTTP app around a keeper (already refreshed, or not ready yet), the key (or a watch for it), the
    targeting models (none when not given) and the forget log (none when not given)."""
    forget = forget or ForgetWatch()
    RecommendationRequest, _ = request_models(p)
    PropensityRequest, NextBestActionRequest = target_request_models(p)
    targets = targets if targets is not None else TargetKeeper()
    keys = key if isinstance(key, KeyWatch) else KeyWatch(key=key)
    app = FastAPI(title="mapwise recommendations", version="1", default_response_class=Json, docs_url=None,
                  redoc_url=None, description="Real-time recommendations from the registry's champion model (onnxruntime).")
    docs_pages(app)
    app.router.route_class = StrictJsonRoute
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
                missing.append(f"no model loaded yet: {keeper.waiting}" + "".join(f"; version {v} refused: {why}"
                                                               for v, why in refused.items()))
            raise HTTPException(503, "; ".join(missing))
        return current, key

    @app.get("/health", summary="The process is up", response_model=Health, responses=errors(*ALWAYS))
    def health() -> Json:
        return Json({"status": "ok"})

    @app.get("/ready", summary="A model is loaded, the key is here: answering", response_model=Ready,
             responses=errors(*ALWAYS, 503))
    def ready() -> Json:
        return Json({"ready": True, "version": serving()[0].version})

    @app.get("/model", summary="The model in service: version, metrics, lineage, refused versions and why",
             response_model=ModelInService, responses=errors(*ALWAYS, 503))
    def model() -> Json:
        current = serving()[0]
        return Json({**current.info, "version": current.version, "refused": keeper.refused,
                     "targets": {name: t.info for name, t in targets.current.items()}})

    @app.get("/targets", summary="The targeting models in service: features, version, metrics; refused versions",
             response_model=TargetsInService, responses=errors(*ALWAYS))
    def target_models() -> Json:
        return Json({"targets": {name: t.info for name, t in targets.current.items()}, "refused": targets.refused})

    batcher = Batcher()

    async def recommendations(body: RecommendationRequest) -> Json:  # type: ignore[valid-type]
        current, key = serving()
        rec = current.recommender
        f = body.filters
        filters = None if f is None else Filters(f.categories, f.min_price, f.max_price, f.allow_items, f.deny_items)
        who = forget.hide([pseudonym(body.customer_id, key)])[0]  # normalised (trimmed too) before hashing
        request = rec.prepare(who, body.k, recent_items=body.recent_items,
                              exclude_purchased=body.exclude_purchased, filters=filters)
        answer = rec.answer(request, await batcher.score(rec, request.history) if request.needs_model else None)
        return Json({
            "items": answer.items, "customer_known": answer.customer_known, "strategy": answer.strategy,
            "model": {"version": current.version, "name": current.info["model"]}, "notes": answer.notes,
        })

    recommendations.__annotations__["body"] = RecommendationRequest  # a local class: resolve it for FastAPI
    app.post("/recommendations", response_model=RecommendationResponse, summary="Top-k items for a customer",
             responses=errors(*ALWAYS, *BODY, 503))(recommendations)

    def target_inputs(model: TargetModel, body):  # noqa: ANN001, ANN202
        """The request's rows encoded for the model: customer ids pseudonymised and looked up, or posted rows."""
        if body.customer_ids is not None:
            key = keys.get()
            if key is None:
                raise HTTPException(503, keys.missing)
            return model.from_ids(body.customer_ids, forget.hide(pseudonyms(body.customer_ids, key)))
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
             response_model=PropensityResponse, responses=errors(*ALWAYS, *BODY, 404, 503),
             description="Body: `task` and exactly one of `customer_ids` and `rows`; `explain` adds the top 5 "
                         "reasons (integrated gradients of the uncalibrated probability from the training mean row, "
                         "per feature).")(propensity)
    app.post("/next-best-action", summary="The treated arm with the largest uplift net of contact cost, or no_contact",
             response_model=NextBestActionResponse, responses=errors(*ALWAYS, *BODY, 503),
             description="Body: exactly one of `customer_ids` and `rows`; `explain` adds the top 5 reasons for "
                         "the best treated arm's uplift.")(next_best_action)
    return app


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
    logging.getLogger("mapwise.serving").setLevel(logging.INFO)  # the service's own logs: models, key, forget log
    return build(load_params(Path(os.environ.get(PARAMS_ENV, "params.yaml"))), os.environ.get(MODEL_ENV) or None)
