"""Batch scoring for campaign tools: top-K recommendations for every known customer (or one segment), and
the next best action (which campaign arm, or none) for every customer an uplift model knows.

Recommendation rows: customer_id (pseudonym), rank, item_id, score, reason. Written in chunks to Parquet or CSV,
under a temporary name first, so a half-written audience never looks complete.
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from mapwise import columns as c
from mapwise.atomic import replacing
from mapwise.csv_export import write_csv
from mapwise.errors import MapwiseError
from mapwise.progress import steps
from mapwise.serving.recommendations import AUDIENCE_SCHEMA, CHUNK, Recommender
from mapwise.serving.targeting import TargetModel

FORMATS = (".parquet", ".csv")
ACTION, EXPECTED_UPLIFT = "action", "expected_uplift"


def segment_customers(profiles: Path, segment: str) -> list[str]:
    """Pseudonyms of the customers in one RFM segment of the profiles table."""
    try:
        table = pl.read_parquet(profiles, columns=[c.CUSTOMER_ID, c.SEGMENT])
    except (OSError, pl.exceptions.PolarsError):
        raise MapwiseError(f"{profiles}: cannot read profiles; run the profile stage first") from None
    known = sorted(table[c.SEGMENT].unique().drop_nulls().to_list())
    if segment not in known:
        raise MapwiseError(f"segment '{segment}' is not in {profiles} (segments: {', '.join(known)})")
    return table.filter(pl.col(c.SEGMENT) == segment)[c.CUSTOMER_ID].to_list()


def write_audience(rec: Recommender, customers: list[str] | None, k: int, out: Path, *, exclude_purchased: bool) -> dict:
    """Score `customers` (all the model knows when None) and write their top `k`; returns counts."""
    if out.suffix not in FORMATS:
        raise MapwiseError(f"{out}: the audience file must end in {' or '.join(FORMATS)}")
    chosen = sorted(rec.customers) if customers is None else sorted(set(customers) & rec.customers.keys())
    skipped = 0 if customers is None else len(set(customers)) - len(chosen)
    rows, writer = 0, None
    chunks = rec.recommend_all(chosen, k, exclude_purchased=exclude_purchased)
    with replacing(out) as partial, open(partial, "wb") as handle:
        for frame in steps(chunks, "scoring customers", total=math.ceil(len(chosen) / CHUNK)):
            if out.suffix == ".csv":
                write_csv(frame, handle, include_header=rows == 0)
            else:
                table = frame.to_arrow()
                writer = writer or pq.ParquetWriter(handle, table.schema)
                writer.write_table(table)
            rows += frame.height
        if writer is not None:
            writer.close()
        elif out.suffix == ".parquet":  # nobody to score: still a valid, empty file
            pl.DataFrame(schema=AUDIENCE_SCHEMA).write_parquet(handle)
    return {"customers": len(chosen), "rows": rows, "not_known_to_model": skipped, "out": str(out)}


def empty_actions() -> pl.DataFrame:
    """An audience with no customer (no uplift model to choose actions)."""
    return pl.DataFrame(schema={c.CUSTOMER_ID: pl.String, ACTION: pl.String, EXPECTED_UPLIFT: pl.Float64})


def next_best_actions(model: TargetModel, chunk: int = 50_000) -> pl.DataFrame:
    """Every customer the uplift bundle knows: customer_id, action (an arm or no_contact), expected_uplift (net of
    the contact cost), and the gross uplift of each treated arm; highest expected uplift first."""
    ids = model.customers[c.CUSTOMER_ID].cast(pl.String).to_list()
    rows = []
    for start in steps(range(0, len(ids), chunk), "choosing actions", total=math.ceil(len(ids) / chunk)):
        for r in model.next_best_action(model.from_ids(ids[start:start + chunk])):
            rows.append({c.CUSTOMER_ID: r[c.CUSTOMER_ID], ACTION: r["action"], EXPECTED_UPLIFT: r["expected_uplift"],
                         **{f"uplift_{arm}": value for arm, value in r["uplift"].items()}})
    schema = {c.CUSTOMER_ID: pl.String, ACTION: pl.String, EXPECTED_UPLIFT: pl.Float64,
              **{f"uplift_{arm}": pl.Float64 for arm in model.arms[1:]}}
    return pl.DataFrame(rows, schema=schema).sort(EXPECTED_UPLIFT, c.CUSTOMER_ID, descending=[True, False])


def write_actions(actions: pl.DataFrame, out: Path) -> dict:
    """Write the next-best-action audience (Parquet or CSV) whole; returns counts per action."""
    if out.suffix not in FORMATS:
        raise MapwiseError(f"{out}: the audience file must end in {' or '.join(FORMATS)}")
    with replacing(out) as partial:
        write_csv(actions, partial) if out.suffix == ".csv" else actions.write_parquet(partial)
    counts = dict(actions.group_by(ACTION).len().sort(ACTION).iter_rows())
    return {"customers": actions.height, "actions": counts, "expected_uplift_total": float(actions[EXPECTED_UPLIFT].sum()),
            "out": str(out)}
