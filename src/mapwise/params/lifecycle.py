"""`tracking`, `export`, `register`, `promote`: from a trained model to a registered, gated champion."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from mapwise.params.base import Section


class TrackingParams(Section):
    """MLflow: where runs and the registry live ($MLFLOW_TRACKING_URI overrides uri)."""

    uri: str = "sqlite:///mlflow.db"
    experiment: str = "mapwise"


class ExportParams(Section):
    """`export`: ONNX graphs proven equal to the trained networks, bundled with what serving needs."""

    out_dir: Path = Path("models/export")
    top_k: int | None = Field(10, ge=1, description="top-K built into the graph (outputs top_items, top_scores); null = scores only")
    parity_customers: int = Field(1000, ge=1, description="test customers whose real histories the parity check scores")
    atol: float = Field(1e-4, gt=0, description="largest allowed |torch - onnxruntime| score difference")
    min_top10_agreement: float = Field(0.99, gt=0, le=1, description="share of customers whose top-10 must agree")
    cold_start_window_days: int = Field(30, ge=1, description="popularity window for customers with no history")
    baselines: bool = Field(True, description="also bundle every evaluate baseline, so a baseline can be what serves "
                            "when no learned model beats it")
    baseline_max_len: int = Field(200, ge=2, description="purchases a served baseline reads (the evaluate stage's "
                                  "baselines read the whole history)")
    report: Path = Path("reports/export.json")


class RegisterParams(Section):
    """`register`: the selected export becomes a version of the registered model, alias `challenger`."""

    model_name: str = Field("mapwise-recommender", min_length=1)
    candidate: Literal["best", "gru", "caser", "sasrec", "repeatnet", "ranker"] = Field(
        "best", description="best = highest validation NDCG")
    target_prefix: str = Field("mapwise", min_length=1, description="targeting models are registered as "
                               "<prefix>-propensity-<task> and <prefix>-uplift")
    report: Path = Path("reports/register.json")


class PromoteParams(Section):
    """`promote`: the gate that moves `champion` to the challenger, on the same test data for both."""

    variant: Literal["all_items", "new_items"] = "all_items"
    margin: float = Field(0.001, ge=0, description="headline NDCG gain the challenger needs over the champion")
    max_slice_drop: float = Field(0.02, ge=0, description="largest NDCG drop allowed on any slice")
    min_slice_customers: int = Field(50, ge=1, description="smaller slices are reported but do not block")
    target_margin: float = Field(0.0, ge=0, description="targeting models: ROC AUC (propensity) or mean Qini (uplift) "
                                 "gain the challenger needs over the champion on the same held-out rows")
    report: Path = Path("reports/promote.json")
