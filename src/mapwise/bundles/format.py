"""A model bundle: one folder holding everything serving needs, and no pickle.

- `model.onnx`: the scoring graph (see `onnx_export`).
- `metadata.json`: model name and shape, the params it was trained with, lineage, metrics, parity.
- `items.parquet`: item_idx <-> item_id, with title, category, price and popularity (cold start, filters).
- `customers.parquet`: per pseudonymous customer, the recent item indices (model input) and every
  item bought (repeat reasons, exclusion).
- `query.onnx`, `item_vectors.npy` (dot-product models only, optional): the history's representation and
  the items' embedding and bias, for approximate nearest-neighbour retrieval (see `retrieval`).
- `network.pt` (optional; bundles exported before it was added lack it): the network's weights and
  shape as the train stage saved them (tensors and plain values only), what a warm start fine-tunes.

The registry stores the same files as an MLflow ONNX model (the extras under `extra_files/`);
`load_bundle` reads either layout.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import polars as pl

from mapwise.atomic import write_json, write_parquet
from mapwise.errors import MapwiseError
from mapwise.bundles.runtime import session
from mapwise.columns import ITEM_IDX

MODEL_FILE = "model.onnx"
QUERY_FILE = "query.onnx"  # a dot-product model's history -> query graph
VECTORS_FILE = "item_vectors.npy"  # ... and its item vectors [n_items + 1, D + 1] (bias last)
METADATA_FILE = "metadata.json"
ITEMS_FILE = "items.parquet"
CUSTOMERS_FILE = "customers.parquet"
NETWORK_FILE = "network.pt"
EXTRA_FILES = (METADATA_FILE, ITEMS_FILE, CUSTOMERS_FILE)
RETRIEVAL_FILES = (QUERY_FILE, VECTORS_FILE)  # both or neither
OPTIONAL_FILES = (*RETRIEVAL_FILES, NETWORK_FILE)
GRAPH_VALUES = 1 << 26  # values a bulk scoring call may hold per [rows, max_len, items] intermediate: 256 MiB
RECENT_POPULARITY = "recent_popularity"
RECENT = "recent"
PURCHASED = "purchased"


def write_bundle(folder: Path, metadata: dict, items: pl.DataFrame, customers: pl.DataFrame) -> None:
    """Write the bundle's tables and metadata beside its `model.onnx`, each file replaced whole."""
    write_parquet(folder / ITEMS_FILE, items)
    write_parquet(folder / CUSTOMERS_FILE, customers)
    write_json(folder / METADATA_FILE, metadata, default=str)


def bundle_files(folder: Path) -> dict[str, Path]:
    """The bundle's files, whether laid out flat or as an MLflow model (extras under extra_files/); the optional
    files (the retrieval pair, the network weights) only when present."""
    found = {}
    for name in (MODEL_FILE, *EXTRA_FILES, *OPTIONAL_FILES):
        for candidate in (folder / name, folder / "extra_files" / name):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            if name not in OPTIONAL_FILES:
                raise MapwiseError(f"{folder}: not a model bundle (no {name})")
    if len(found.keys() & set(RETRIEVAL_FILES)) == 1:
        raise MapwiseError(f"{folder}: {' and '.join(RETRIEVAL_FILES)} come together; one is missing")
    return found


def bundle_digest(folder: Path) -> str:
    """A content hash of the bundle: the same export registers once."""
    digest = hashlib.sha256()
    for name, path in sorted(bundle_files(folder).items()):
        digest.update(name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Bundle:
    """A loaded bundle: the onnxruntime session and the tables, ready to score."""

    folder: Path
    metadata: dict
    session: ort.InferenceSession
    items: pl.DataFrame
    customers: pl.DataFrame
    query: ort.InferenceSession | None = None  # history -> representation (dot-product models)
    item_vectors: np.ndarray | None = None  # [n_items + 1, D + 1]: embedding and bias

    @property
    def name(self) -> str:
        return self.metadata["model"]

    @property
    def max_len(self) -> int:
        return int(self.metadata["max_len"])

    @property
    def n_items(self) -> int:
        return int(self.metadata["n_items"])

    @property
    def rows_per_call(self) -> int:
        """Histories per graph call in bulk scoring: a graph may hold [rows, max_len, items] values (the ranker's
        features do), so the rows are bounded by the catalogue and window sizes."""
        return max(1, min(1024, GRAPH_VALUES // (self.max_len * (self.n_items + 1))))


def load_bundle(folder: Path, *, threads: int = 1) -> Bundle:
    """Read a bundle; a missing file, unreadable graph or mismatched tables is a MapwiseError."""
    files = bundle_files(folder)
    try:
        metadata = json.loads(files[METADATA_FILE].read_text())
        sess = session(files[MODEL_FILE], threads=threads)
        items = pl.read_parquet(files[ITEMS_FILE])
        customers = pl.read_parquet(files[CUSTOMERS_FILE])
        query = session(files[QUERY_FILE], threads=threads) if QUERY_FILE in files else None
        vectors = np.load(files[VECTORS_FILE], allow_pickle=False) if VECTORS_FILE in files else None
    except (OSError, ValueError, ort.capi.onnxruntime_pybind11_state.Fail,
            ort.capi.onnxruntime_pybind11_state.InvalidGraph, ort.capi.onnxruntime_pybind11_state.InvalidProtobuf) as err:
        raise MapwiseError(f"{folder}: cannot load the bundle ({str(err).splitlines()[0][:200]})") from None
    if items.height != int(metadata.get("n_items", -1)) or not np.array_equal(
        items[ITEM_IDX].to_numpy(), np.arange(1, items.height + 1)
    ):
        raise MapwiseError(f"{folder}: {ITEMS_FILE} does not match the model's {metadata.get('n_items')} items")
    if vectors is not None and (vectors.ndim != 2 or vectors.shape[0] != items.height + 1 or vectors.dtype != np.float32):
        raise MapwiseError(f"{folder}: {VECTORS_FILE} of shape {vectors.shape} ({vectors.dtype}) does not match the "
                           f"model's {items.height} items (expected [{items.height + 1}, D + 1] float32)")
    return Bundle(folder, metadata, sess, items, customers, query, vectors)
