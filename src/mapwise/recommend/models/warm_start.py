"""Warm start: a registered version's network as the starting point of training, its item table extended.

The train stage's `train.init_from` names a registered version (`models:/<name>/<version>` or `@<alias>`).
Its bundle holds the network's weights (`network.pt`) and its item index (`items.parquet`); the new split
may have other items, in another order. The item-indexed tables (`ITEM_TABLES`: the item embeddings and
the output bias) are rebuilt in the split's index: an item the version knew keeps its row, a new item gets
the mean of the known rows plus small noise (seeded), so new items start as "an average item" and the
model learns them from the new data. Everything else is copied as it is.

A version that cannot be used (none under that name, no weights, another architecture or other sizes)
gives `None` and the reason; the caller trains from scratch and says why.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import torch

from mapwise import columns as c
from mapwise.errors import MapwiseError
from mapwise.params import ModelParams
from mapwise.recommend.models.files import network_hparams, saved_state
from mapwise.recommend.models.networks import build_network
from mapwise.columns import ITEM_IDX

ITEM_TABLES = ("items.weight", "bias")  # rows indexed by item (row 0: padding)
NOISE = 0.01  # new rows: mean of the known rows + N(0, (NOISE * per-column std of the known rows)^2)


@dataclass(frozen=True)
class WarmStart:
    """Initial weights for a network over the split's items, and where they came from."""

    source: str  # models:/<name>/<version>
    model: str  # architecture
    state: dict[str, torch.Tensor]
    kept: int  # items whose rows were carried over
    added: int  # new items, rows initialised to the mean
    dropped: int  # items the version knew that the split no longer has
    digest: str  # of the weights: a changed source is a different training run

    def describe(self) -> str:
        return (f"warm start from {self.source} ({self.model}): {self.kept} items kept, {self.added} new "
                f"(initialised to the mean item), {self.dropped} no longer in the data")


def extend_item_tables(state: dict[str, torch.Tensor], old_ids: list[str], new_ids: list[str],
                       seed: int = 0) -> tuple[dict[str, torch.Tensor], int, int]:
    """`state` with its item tables rebuilt for `new_ids` (item i at row i + 1); (state, kept, added).

    `old_ids[i]` is the item at row i + 1 of the tables in `state`. Rows of items in both keep their values;
    new items get the known rows' mean plus small noise. Row 0 (padding) is kept.
    """
    old_row = {item: row + 1 for row, item in enumerate(old_ids)}
    source = torch.tensor([old_row.get(item, -1) for item in new_ids], dtype=torch.long)
    known = source >= 0
    generator = torch.Generator().manual_seed(seed)
    out = dict(state)
    for key in ITEM_TABLES:
        table = state[key]
        if table.shape[0] != len(old_ids) + 1:
            raise MapwiseError(f"{key}: {table.shape[0] - 1} rows for {len(old_ids)} items; the weights do not match "
                               "their item table")
        rows = table[1:]
        fresh = rows.mean(0, keepdim=True).expand(len(new_ids), *rows.shape[1:]).clone()
        if len(old_ids) > 1:
            noise = torch.randn(fresh.shape, generator=generator, dtype=rows.dtype) * rows.std(0, keepdim=True) * NOISE
            fresh = fresh + noise
        fresh[known] = rows[source[known] - 1]
        out[key] = torch.cat([table[:1], fresh])
    kept = int(known.sum())
    return out, kept, len(new_ids) - kept


def parse_ref(ref: str) -> tuple[str, str | None, str | None]:
    """`models:/<name>/<version>` or `models:/<name>@<alias>` -> (name, version, alias)."""
    body = ref.removeprefix("models:/")
    if "@" in body:
        name, alias = body.split("@", 1)
        return name, None, alias
    name, version = body.rsplit("/", 1)
    return name, version, None


def resolve_version(uri: str, ref: str) -> tuple[str, str] | str:
    """(model name, version) the reference points at in the registry at `uri`, or why there is none."""
    from mlflow.exceptions import MlflowException

    from mapwise.bundles.registry import alias_version, client_at

    name, version, alias = parse_ref(ref)
    c = client_at(uri)
    if alias is not None:
        version = alias_version(c, name, alias)
        if version is None:
            return f"'{name}' has no version with alias '{alias}' in the registry"
        return name, version
    try:
        c.get_model_version(name, version)
    except MlflowException:
        return f"'{name}' has no version {version} in the registry"
    return name, version


def load_warm_start(uri: str, ref: str, model: str, p: ModelParams, split_items: pl.DataFrame, cache_dir: Path,
                    seed: int = 0) -> tuple[WarmStart | None, str]:
    """Initial weights for `model` (sizes `p`) over the split's items from the version `ref` names, or (None, why not).

    Lack of weights, another architecture or other sizes are reasons, not errors: the caller trains from scratch.
    """
    from mapwise.bundles.registry import download
    from mapwise.bundles.format import ITEMS_FILE, NETWORK_FILE, bundle_files

    found = resolve_version(uri, ref)
    if isinstance(found, str):
        return None, found
    name, version = found
    source = f"models:/{name}/{version}"
    files = bundle_files(download(uri, name, version, cache_dir))
    if NETWORK_FILE not in files:
        return None, f"{source} holds no network weights ({NETWORK_FILE}: exported before warm starts)"

    hparams = network_hparams(files[NETWORK_FILE])
    if hparams["name"] != model:
        return None, f"{source} is a {hparams['name']}, not a {model}: another architecture"
    sizes = ModelParams(**hparams["model"]).model_dump()
    differ = {k: (v, getattr(p, k)) for k, v in sizes.items() if getattr(p, k) != v}
    if differ:
        said = ", ".join(f"{k} {old} vs {new}" for k, (old, new) in differ.items())
        return None, f"{source} has other sizes ({said})"
    old_ids = pl.read_parquet(files[ITEMS_FILE]).sort(ITEM_IDX)[c.ITEM_ID].to_list()
    if len(old_ids) != hparams["n_items"]:
        return None, f"{source}: {ITEMS_FILE} lists {len(old_ids)} items, its network {hparams['n_items']}"
    new_ids = split_items.sort(ITEM_IDX)[c.ITEM_ID].to_list()
    state, kept, added = extend_item_tables(saved_state(files[NETWORK_FILE]), old_ids, new_ids, seed)
    try:
        build_network(model, len(new_ids), p).load_state_dict(state)
    except RuntimeError as err:  # a network whose code changed since: parameters missing or reshaped
        return None, f"{source}: its weights do not fit today's {model} ({str(err).splitlines()[0]})"
    digest = hashlib.sha256(files[NETWORK_FILE].read_bytes()).hexdigest()[:12]
    warm = WarmStart(source, model, state, kept, added, len(set(old_ids) - set(new_ids)), digest)
    return warm, warm.describe()
