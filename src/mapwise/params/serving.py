"""`serve` and `score`: the HTTP service and batch audiences."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from mapwise.params.base import Section


class RetrievalParams(Section):
    """`serve.retrieval`: how the recommender finds its top items.

    exact scores the whole catalogue; ann asks an approximate nearest-neighbour index (faiss IVF, inner
    product, built when the model loads) for `candidates` items and ranks those by their exact scores.
    ann needs a dot-product model (GRU4Rec, Caser, SASRec); RepeatNet's mixture is always scored exactly.
    """

    method: Literal["auto", "exact", "ann"] = Field("auto", description="auto = ann from ann_min_items items up")
    ann_min_items: int = Field(50_000, ge=1, description="auto: the catalogue size from which ann is used")
    candidates: int = Field(200, ge=1, description="items the index returns, re-ranked by exact score")
    nlist: int | None = Field(None, ge=1, description="index cells (k-means); null = 4 * sqrt(items)")
    nprobe: int = Field(16, ge=1, description="cells searched per request: more = better recall, slower")


class ServeParams(Section):
    """`mapwise serve`: the HTTP service on onnxruntime."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    model: str | None = Field(None, description="models:/<name>@<alias>, or a bundle folder; null = champion")
    poll_seconds: float = Field(10, gt=0, description="how often the champion alias is checked")
    workers: int = Field(1, ge=1)
    threads: int = Field(1, ge=1, description="onnxruntime intra-op threads per worker")
    max_k: int = Field(100, ge=1)
    max_recent_items: int = Field(100, ge=1)
    max_list_items: int = Field(1000, ge=1, description="longest allow / deny / category list")
    max_body_bytes: int = Field(65536, ge=1024)
    max_header_bytes: int = Field(16384, ge=1024, description="request line and headers; over it: 431, connection closed")
    request_timeout_seconds: float = Field(10, gt=0, description="to receive a whole request (headers and body) from "
                                           "the connection or its first byte; over it: 408, connection closed")
    cache_dir: Path = Field(Path(".mapwise/serving"), description="downloaded versions, shared by the workers")
    targets: dict[str, str] | None = Field(None, description=(
        "targeting models: 'propensity/<task>' (or just '<task>') and 'uplift' -> models:/<name>@<alias> or a bundle "
        "folder; null = every registered mapwise-propensity-<task> and mapwise-uplift with a champion alias"))
    max_explain_rows: int = Field(100, ge=1, description="most rows one targeting request may ask reasons for")
    retrieval: RetrievalParams = RetrievalParams()

    @field_validator("targets")
    @classmethod
    def _target_names(cls, targets: dict[str, str] | None) -> dict[str, str] | None:
        import re

        for name in targets or {}:
            if not re.fullmatch(r"uplift|(propensity/)?[A-Za-z0-9_.-]{1,64}", name) or name == "propensity":
                raise ValueError(f"'{name}': expected 'uplift', 'propensity/<task>' or '<task>' "
                                 "(letters, digits, _ . -)")
        return targets


class ScoreParams(Section):
    """`mapwise score`: top-K for every customer (or a segment), for campaign tools."""

    k: int = Field(10, ge=1)
    exclude_purchased: bool = True
    out: Path = Path("data/audience/recommendations.parquet")
