"""A model bundle: one folder holding everything serving needs, and no pickle.

- `model.onnx`: the scoring graph (see `onnx_export`).
- `metadata.json`: model name and shape, the params it was trained with, lineage, metrics, parity.
- `items.parquet`: item_idx <-> item_id, with title, category, price and popularity (cold start, filters).
- `customers.parquet`: per pseudonymous customer, the recent item indices (model input) and every
  item bought (repeat reasons, exclusion).
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
from mapwise.serving.inference import session
from mapwise.recommend.split import ITEM_IDX

MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
ITEMS_FILE = "items.parquet"
CUSTOMERS_FILE = "customers.parquet"
NETWORK_FILE = "network.pt"
EXTRA_FILES = (METADATA_FILE, ITEMS_FILE, CUSTOMERS_FILE)
OPTIONAL_FILES = (NETWORK_FILE,)
RECENT_POPULARITY = "recent_popularity"
RECENT = "recent"
PURCHASED = "purchased"


def write_bundle(folder: Path, metadata: dict, items: pl.DataFrame, customers: pl.DataFrame) -> None:
    """Write the bundle's tables and metadata beside its `model.onnx`, each file replaced whole."""
    write_parquet(folder / ITEMS_FILE, items)
    write_parquet(folder / CUSTOMERS_FILE, customers)
    write_json(folder / METADATA_FILE, metadata, default=str)


def bundle_files(folder: Path) -> dict[str, Path]:
    """The bundle's files, whether laid out flat or as an MLflow model (extras under extra_files/)."""
    found = {}
    for name in (MODEL_FILE, *EXTRA_FILES):
        for candidate in (folder / name, folder / "extra_files" / name):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            raise MapwiseError(f"{folder}: not a model bundle (no {name})")
    for name in OPTIONAL_FILES:
        for candidate in (folder / name, folder / "extra_files" / name):
            if candidate.is_file():
                found[name] = candidate
                break
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

    @property
    def name(self) -> str:
        return self.metadata["model"]

    @property
    def max_len(self) -> int:
        return int(self.metadata["max_len"])

    @property
    def n_items(self) -> int:
        return int(self.metadata["n_items"])


def load_bundle(folder: Path, *, threads: int = 1) -> Bundle:
    """Read a bundle; a missing file, unreadable graph or mismatched tables is a MapwiseError."""
    files = bundle_files(folder)
    try:
        metadata = json.loads(files[METADATA_FILE].read_text())
        sess = session(files[MODEL_FILE], threads=threads)
        items = pl.read_parquet(files[ITEMS_FILE])
        customers = pl.read_parquet(files[CUSTOMERS_FILE])
    except (OSError, ValueError, ort.capi.onnxruntime_pybind11_state.Fail,
            ort.capi.onnxruntime_pybind11_state.InvalidGraph, ort.capi.onnxruntime_pybind11_state.InvalidProtobuf) as err:
        raise MapwiseError(f"{folder}: cannot load the bundle ({str(err).splitlines()[0][:200]})") from None
    if items.height != int(metadata.get("n_items", -1)) or not np.array_equal(
        items[ITEM_IDX].to_numpy(), np.arange(1, items.height + 1)
    ):
        raise MapwiseError(f"{folder}: {ITEMS_FILE} does not match the model's {metadata.get('n_items')} items")
    return Bundle(folder, metadata, sess, items, customers)
