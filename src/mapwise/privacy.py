"""Pseudonymisation: customer ids become keyed HMAC-SHA256 digests at ingestion.

The key comes from the environment (`MAPWISE_HMAC_KEY`) or from a local secret file that is
created on first use with owner-only permissions and is never committed. Without the key a
pseudonym cannot be linked back to the raw id, nor recomputed from it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

import polars as pl

from mapwise.contracts import PSEUDONYM_LENGTH
from mapwise.errors import MapwiseError

KEY_ENV = "MAPWISE_HMAC_KEY"
_MIN_KEY_BYTES = 16


def load_key(key_file: Path) -> bytes:
    """The HMAC key: $MAPWISE_HMAC_KEY, else the key file, created with a fresh random key."""
    value = os.environ.get(KEY_ENV)
    origin = f"${KEY_ENV}"
    if not value:
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32) + "\n")
        value = key_file.read_text().strip()
        origin = str(key_file)
    if len(value.encode()) < _MIN_KEY_BYTES:
        raise MapwiseError(f"{origin}: the pseudonymisation key must be at least {_MIN_KEY_BYTES} bytes")
    return value.encode()


def pseudonym(raw_id: str, key: bytes) -> str:
    """The pseudonym of one raw id."""
    return hmac.new(key, raw_id.encode(), hashlib.sha256).hexdigest()[:PSEUDONYM_LENGTH]


def pseudonymise(ids: pl.Series, key: bytes) -> pl.Series:
    """Replace every id by its pseudonym (nulls stay null); each distinct id is hashed once."""
    text = ids.cast(pl.String).str.strip_chars()
    distinct = text.drop_nulls().unique()
    distinct = distinct.filter(distinct != "")  # blank ids are missing ids
    digests = pl.Series([pseudonym(v, key) for v in distinct.to_list()], dtype=pl.String)
    return text.replace_strict(distinct, digests, default=None, return_dtype=pl.String).alias(ids.name)
