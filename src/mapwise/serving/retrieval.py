"""Top items for a large catalogue: approximate nearest neighbours over the item vectors, then exact scores.

A dot-product model scores item i as query . embedding_i + bias_i, i.e. [query, 1] . vector_i with the
bundle's `item_vectors.npy`. An inverted-file index (faiss IVF, inner product; built when the bundle
loads, never downloaded) returns the `candidates` items with the largest such products among the cells
nearest the query; those allowed by the request's filters and exclusions are ranked by their exact
score. When fewer than k candidates pass the filters, or the filters allow no more items than the
candidates, the allowed items are scored exactly: a filtered answer is never short for lack of candidates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


EXACT, ANN = "exact", "ann"


def choose(method: str, n_items: int, ann_min_items: int, supported: bool) -> str:
    """exact or ann: `auto` picks ann from `ann_min_items` items up; a model that is not a dot product is exact."""
    if not supported:
        return EXACT
    if method == "auto":
        return ANN if n_items >= ann_min_items else EXACT
    return method


@dataclass
class Index:
    """A faiss IVF inner-product index over items 1..n, and exact re-ranking of what it returns."""

    vectors: np.ndarray  # [n_items + 1, D + 1], float32, row 0 padding
    candidates: int
    nprobe: int
    nlist: int
    _index: object
    _quantizer: object  # kept alive beside the index that uses it

    @classmethod
    def build(cls, vectors: np.ndarray, *, candidates: int, nprobe: int, nlist: int | None = None) -> Index:
        import faiss  # only the ann path needs it

        faiss.omp_set_num_threads(1)  # one per worker, like onnxruntime: the workers share the cores
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        items = vectors[1:]
        n, dim = items.shape
        cells = max(1, min(nlist or round(4 * math.sqrt(n)), n // 39 or 1))  # k-means wants ~39 points per cell
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, cells, faiss.METRIC_INNER_PRODUCT)
        index.train(items)
        index.add(items)
        index.nprobe = min(nprobe, cells)
        return cls(vectors, candidates, index.nprobe, cells, index, quantizer)

    def search(self, queries: np.ndarray, count: int) -> np.ndarray:
        """Item indices [n, count] (1-based; 0 where the searched cells held fewer) for queries [n, D]."""
        augmented = np.hstack([queries, np.ones((len(queries), 1), dtype=np.float32)]).astype(np.float32, copy=False)
        _, found = self._index.search(np.ascontiguousarray(augmented), count)
        return found + 1  # faiss's -1 (nothing) becomes 0, the padding index

    def top(self, query: np.ndarray, allowed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The best `k` allowed items for one query [D], best first, with their exact scores."""
        n_allowed = int(np.count_nonzero(allowed))
        if n_allowed > max(self.candidates, k):
            found = self.search(query[None, :], max(self.candidates, k))[0]
            found = found[allowed[found]]  # padding (0) is never allowed
            if len(found) >= k:
                return ranked(found, self._exact(query, found), k)
        everything = np.flatnonzero(allowed)  # few allowed, or too few of them among the candidates: all exactly
        return ranked(everything, self._exact(query, everything), k)

    def _exact(self, query: np.ndarray, items: np.ndarray) -> np.ndarray:
        chosen = self.vectors[items]
        return chosen[:, :-1] @ query + chosen[:, -1]


def ranked(items: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if len(items) > k:
        part = np.argpartition(-scores, k - 1)[:k]
        items, scores = items[part], scores[part]
    order = np.argsort(-scores, kind="stable")
    return items[order], scores[order]


def recall_at(exact_top: np.ndarray, ann_top: np.ndarray) -> float:
    """Share of the exact top items (rows of indices) that the ann top holds, averaged over rows."""
    hits = [len(set(e.tolist()) & set(a.tolist())) / max(len(e), 1) for e, a in zip(exact_top, ann_top, strict=True)]
    return float(np.mean(hits)) if hits else float("nan")
