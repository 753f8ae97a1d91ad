"""The service's request and response bodies; request models are built from `serve` limits (list sizes, k)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from mapwise.params import ServeParams
from mapwise.sources.contracts import MAX_TEXT_LENGTH

# Any id ingest accepts: up to MAX_TEXT_LENGTH characters of any script, not blank (ids are hashed or matched,
# never printed or logged)
_ID = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_LENGTH, pattern=r"\S")]


def request_models(p: ServeParams) -> tuple[type[BaseModel], type[BaseModel]]:
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


def target_request_models(p: ServeParams) -> tuple[type[BaseModel], type[BaseModel]]:
    id_list = Annotated[list[_ID], Field(min_length=1, max_length=p.max_list_items)]
    row_list = Annotated[list[dict[str, Any]], Field(min_length=1, max_length=p.max_list_items)]

    class TargetRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={
            "oneOf": [{"required": ["customer_ids"]}, {"required": ["rows"]}]})  # exactly one of the two
        customer_ids: id_list = Field(None, description="the shop's own customer ids (pseudonymised on arrival, "
                                                             "never stored), looked up in the model's customer table")
        rows: row_list = Field(None, description="raw feature values, one object per row (names and types: "
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


class ServedModel(BaseModel):
    """Which registered model answered."""

    model_config = ConfigDict(extra="allow")
    name: str | None
    version: str


class RecommendationResponse(BaseModel):
    items: list[RecommendedItem]
    customer_known: bool
    strategy: str
    model: ServedModel
    notes: list[str]


class ErrorBody(BaseModel):
    """Every error: one line, never a server path or a raw id."""

    error: str


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    ready: Literal[True]
    version: str


class ModelInService(BaseModel):
    """The bundle's metadata (model, metrics, lineage...), versions refused and why, the targeting models."""

    model_config = ConfigDict(extra="allow")
    version: str
    refused: dict[str, str]
    targets: dict[str, dict[str, Any]]


class TargetsInService(BaseModel):
    targets: dict[str, dict[str, Any]]
    refused: dict[str, dict[str, str]] = Field(description="per model, the versions refused and why")


class Reason(BaseModel):
    model_config = ConfigDict(extra="allow")
    feature: str
    attribution: float


class _Row(BaseModel):
    customer_id: str | None = Field(None, description="as asked (customer_ids requests)")
    index: int | None = Field(None, description="the row's position (rows requests)")
    found: bool | None = Field(None, description="the customer is in the model's table (customer_ids requests)")
    reasons: list[Reason] | None = Field(None, description="with explain: the top reasons")


class PropensityResult(_Row):
    probability: float | None = Field(None, description="absent for a customer not found")


class ActionResult(_Row):
    action: str | None = None
    expected_uplift: float | None = None
    uplift: dict[str, float] | None = None
    explained_arm: str | None = None


class PropensityResponse(BaseModel):
    task: str
    model: ServedModel
    results: list[PropensityResult]


class NextBestActionResponse(BaseModel):
    model: ServedModel
    outcome: str
    arms: list[str]
    contact_cost: float
    results: list[ActionResult]


def errors(*codes: int) -> dict[int, dict]:
    """OpenAPI `responses` for these error statuses, each with the ErrorBody schema and what it means."""
    return {code: {"model": ErrorBody, "description": ERROR_MEANINGS[code]} for code in codes}


ERROR_MEANINGS = {
    404: "not found (an unknown path, or a propensity task not served)",
    405: "method not allowed",
    408: "the request took too long to arrive",
    413: "the body is larger than serve.max_body_bytes",
    422: "the body is not valid: the first problem, with its field",
    431: "the request head (headers) is too large",
    500: "internal error",
    503: "not ready: no model loaded, no key yet, or the model asked for is not loaded; the reason says which",
}
