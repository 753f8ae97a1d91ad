"""Recommendations from a bundle: model scores, business filters, exclusions, a reason per item, cold start.

Top items are found by scoring the whole catalogue (exact) or, for large catalogues and dot-product
models, by an approximate nearest-neighbour index re-ranked exactly (ann; `serve.retrieval`, `retrieval`).

Shared by the HTTP service (one customer at a time) and batch scoring (many at once). Customers are
looked up by pseudonym; callers pseudonymise raw ids first.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from mapwise import columns as c
from mapwise.bundles.format import PURCHASED, RECENT, RECENT_POPULARITY, Bundle
from mapwise.params import RetrievalParams
from mapwise.bundles.runtime import INPUT, QUERY, SCORES
from mapwise.serving.retrieval import ANN, Index, choose, ranked
from mapwise.recommend.models.sequences import pad_left
from mapwise.recommend.split import POPULARITY
from mapwise.columns import ITEM_IDX

MODEL, REPEAT, POPULAR = "model", "repeat", "popular"  # reason codes
CHUNK = 1024  # customers scored per onnxruntime call in batch scoring
AUDIENCE_SCHEMA = {c.CUSTOMER_ID: pl.String, "rank": pl.Int32, c.ITEM_ID: pl.String, "score": pl.Float32,
                   "reason": pl.String}
_NONE = np.empty(0, dtype=np.int64)


@dataclass(frozen=True)
class Filters:
    """Business rules on candidates: all must hold. Items without a price fail any price bound."""

    categories: Sequence[str] | None = None
    min_price: float | None = None
    max_price: float | None = None
    allow_items: Sequence[str] | None = None
    deny_items: Sequence[str] = ()

    def active(self) -> bool:
        return any(v is not None for v in (self.categories, self.min_price, self.max_price, self.allow_items)) or bool(
            self.deny_items
        )


@dataclass(frozen=True)
class Request:
    """A recommendation request resolved against the catalogue, ready for the model."""

    known: bool
    k: int
    history: np.ndarray  # item indices, oldest first, at most max_len
    purchased: np.ndarray
    session: np.ndarray
    allowed: np.ndarray
    unknown: int  # recent items the model does not know

    @property
    def needs_model(self) -> bool:
        return len(self.history) > 0


@dataclass(frozen=True)
class Answer:
    """Recommended items (best first) and how they were chosen."""

    items: list[dict]
    customer_known: bool
    strategy: str  # model | popular (cold start with no known items to go on)
    unknown_recent_items: int = 0
    notes: list[str] = field(default_factory=list)


class Recommender:
    """Ranks a bundle's catalogue for one customer or many."""

    def __init__(self, bundle: Bundle, retrieval: RetrievalParams | None = None) -> None:
        self.bundle = bundle
        items = bundle.items.sort(ITEM_IDX)
        self.n_items, self.max_len = bundle.n_items, bundle.max_len
        self.item_ids = np.array(["", *items[c.ITEM_ID].to_list()], dtype=object)
        self.index = {item: idx for idx, item in enumerate(self.item_ids) if idx}
        self.titles = ["", *items[c.TITLE].to_list()]
        self.categories = ["", *items[c.CATEGORY].to_list()]
        self.prices = np.concatenate([[np.nan], items[c.PRICE].cast(pl.Float64).fill_null(np.nan).to_numpy()])
        recent, total = items[RECENT_POPULARITY].to_numpy(), items[POPULARITY].to_numpy()
        self.popular = np.lexsort((np.arange(self.n_items), -total, -recent)) + 1  # most popular first
        self.popularity = np.concatenate([[0.0], recent.astype(np.float64)])
        self.everything = np.ones(self.n_items + 1, dtype=bool)
        self.everything[0] = False
        self.customers = {
            cu: (np.asarray(r, dtype=np.int64), np.asarray(p, dtype=np.int64))
            for cu, r, p in bundle.customers.select(c.CUSTOMER_ID, RECENT, PURCHASED).iter_rows()
        }
        r = retrieval or RetrievalParams()
        self.retrieval = choose(r.method, self.n_items, r.ann_min_items, bundle.query is not None)
        self.ann = Index.build(bundle.item_vectors, candidates=r.candidates, nprobe=r.nprobe, nlist=r.nlist) if (
            self.retrieval == ANN) else None

    # -- one customer ---------------------------------------------------------------------------
    def recommend(
        self, customer: str | None, k: int, *, recent_items: Sequence[str] = (), exclude_purchased: bool = False,
        filters: Filters | None = None,
    ) -> Answer:
        """Top `k` for a customer (pseudonym; unknown or None = cold start), after filters and exclusions."""
        request = self.prepare(customer, k, recent_items=recent_items, exclude_purchased=exclude_purchased,
                               filters=filters)
        return self.answer(request, self.infer([request.history])[0] if request.needs_model else None)

    def prepare(
        self, customer: str | None, k: int, *, recent_items: Sequence[str] = (), exclude_purchased: bool = False,
        filters: Filters | None = None,
    ) -> Request:
        """Everything but the model call: the history to score and the candidates allowed."""
        recent, purchased = self.customers.get(customer, (_NONE, _NONE))
        session = np.array([self.index[i] for i in recent_items if i in self.index], dtype=np.int64)
        allowed = _excluding(self.allowed(filters), purchased if exclude_purchased else _NONE)
        history = np.concatenate([recent, session])[-self.max_len :]
        return Request(customer in self.customers, k, history, purchased, session, allowed,
                       len(recent_items) - len(session))

    def answer(self, request: Request, row: np.ndarray | None) -> Answer:
        """Rank from the model's output row (`infer`; None when there is no history: popularity), with reasons."""
        notes = [f"{request.unknown} of recent_items unknown to the model, ignored"] if request.unknown else []
        if row is None:
            top = self.popular[request.allowed[self.popular]][: request.k]
            scores = self.popularity[top]
            reasons, strategy = [POPULAR] * len(top), POPULAR
        else:
            top, scores = self.top(row, request.allowed, request.k)
            seen = {*request.purchased.tolist(), *request.session.tolist()}  # a set: np.isin costs more at this size
            reasons, strategy = [REPEAT if i in seen else MODEL for i in top.tolist()], MODEL
        if len(top) < request.k:  # k is clamped to what there is: never an error
            notes.append(f"the catalogue has only {self.n_items} items" if len(top) == self.n_items else
                         f"only {len(top)} items pass the filters")
        return Answer(self._describe(top, scores, reasons), request.known, strategy, request.unknown, notes)

    def allowed(self, filters: Filters | None) -> np.ndarray:
        """Boolean mask over item indices (0 = padding, never allowed)."""
        if filters is None or not filters.active():
            return self.everything
        mask = self.everything.copy()
        if filters.categories is not None:
            wanted = set(filters.categories)
            mask &= np.array([cat in wanted for cat in self.categories])
        if filters.min_price is not None:
            mask &= self.prices >= filters.min_price  # NaN compares False: no price, no pass
        if filters.max_price is not None:
            mask &= self.prices <= filters.max_price
        if filters.allow_items is not None:
            keep = np.zeros_like(mask)
            keep[[self.index[i] for i in filters.allow_items if i in self.index]] = True
            mask &= keep
        deny = [self.index[i] for i in filters.deny_items if i in self.index]
        mask[deny] = False
        return mask

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """Model scores [n, n_items + 1] for item-index histories (oldest first; the last max_len are read), in
        calls of at most `bundle.rows_per_call` histories."""
        step = self.bundle.rows_per_call
        parts = [self.bundle.session.run([SCORES], {INPUT: self.windows(histories[i:i + step])})[0]
                 for i in range(0, max(len(histories), 1), step)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def windows(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """The graph's input: histories left-padded to max_len, or, where padding never changes a score (checked at
        export: `padding_invariant`), only to the longest of them (at least 2): short histories cost less."""
        if not self.bundle.metadata.get("padding_invariant"):
            return pad_left(histories, self.max_len)
        longest = max((len(h) for h in histories), default=0)
        return pad_left(histories, min(self.max_len, max(2, longest)))

    def infer(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """What `top` ranks from, one row per history: the query vectors (ann) or the catalogue's scores (exact)."""
        if self.ann is None:
            return self.score(histories)
        return self.bundle.query.run([QUERY], {INPUT: self.windows(histories)})[0]

    def top(self, row: np.ndarray, allowed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The best `k` allowed items for one row of `infer`, best first, with their scores."""
        return _top(row, allowed, k) if self.ann is None else self.ann.top(row, allowed, k)

    def _describe(self, top: np.ndarray, scores: np.ndarray, reasons: list[str]) -> list[dict]:
        return [
            {"item_id": self.item_ids[i], "score": round(float(s), 6), "reason": r, "title": self.titles[i],
             "category": self.categories[i], "price": None if np.isnan(self.prices[i]) else float(self.prices[i])}
            for i, s, r in zip(top.tolist(), scores.tolist(), reasons, strict=True)
        ]

    # -- many customers -------------------------------------------------------------------------
    def recommend_all(self, customers: Sequence[str], k: int, *, exclude_purchased: bool = False) -> Iterator[pl.DataFrame]:
        """Top `k` for known customers, one frame per chunk: customer_id, rank, item_id, score, reason."""
        for start in range(0, len(customers), CHUNK):
            chunk = customers[start : start + CHUNK]
            scores = self.infer([self.customers[cu][0] for cu in chunk])
            rows = []
            for row, cu in enumerate(chunk):
                purchased = self.customers[cu][1]
                allowed = _excluding(self.everything, purchased if exclude_purchased else _NONE)
                top, top_scores = self.top(scores[row], allowed, k)
                repeat = np.isin(top, purchased)
                rows.extend(
                    (cu, rank, self.item_ids[i], float(s), REPEAT if r else MODEL)
                    for rank, (i, s, r) in enumerate(zip(top.tolist(), top_scores.tolist(), repeat.tolist(), strict=True), start=1)
                )
            yield pl.DataFrame(rows, schema=AUDIENCE_SCHEMA, orient="row")


def _excluding(allowed: np.ndarray, items: np.ndarray) -> np.ndarray:
    """The mask without `items` (a copy when anything changes: shared masks stay intact)."""
    if not len(items):
        return allowed
    allowed = allowed.copy()
    allowed[items] = False
    return allowed


def _top(row: np.ndarray, allowed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best `k` allowed indices of one score row, best first (fewer when fewer are allowed)."""
    candidates = np.flatnonzero(allowed)
    return ranked(candidates, row[candidates], k)
