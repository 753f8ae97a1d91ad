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

from mapwise.sources.contracts import PSEUDONYM_LENGTH
from mapwise.errors import MapwiseError

KEY_ENV = "MAPWISE_HMAC_KEY"
_MIN_KEY_BYTES = 16


def load_key(key_file: Path, *, create: bool = True) -> bytes:
    """The HMAC key: $MAPWISE_HMAC_KEY, else the key file, created with a fresh random key when `create`.

    Consumers of pseudonyms (serving, scoring) pass create=False: a fresh key would silently match no one.
    """
    value = os.environ.get(KEY_ENV)
    origin = f"${KEY_ENV}"
    if not value:
        if not key_file.exists() and not create:
            raise MapwiseError(f"{key_file}: no pseudonymisation key; set ${KEY_ENV} to the key used at ingestion")
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
    return pseudonyms([raw_id], key)[0]


def pseudonyms(raw_ids: list[str], key: bytes) -> list[str]:
    """The pseudonyms of many raw ids, reusing the keyed hash state (~3x faster than one HMAC each)."""
    keyed = hmac.new(key, digestmod=hashlib.sha256)
    out = []
    for raw_id in raw_ids:
        h = keyed.copy()
        h.update(raw_id.encode())
        out.append(h.hexdigest()[:PSEUDONYM_LENGTH])
    return out


def pseudonymise(ids: pl.Series, key: bytes) -> pl.Series:
    """Replace every id by its pseudonym (nulls and blanks become null); each distinct id is hashed once."""
    text = ids.cast(pl.String)
    distinct = text.drop_nulls().unique()
    stripped = distinct.str.strip_chars()  # " 42" and "42" are one customer
    keep = stripped != ""
    digests = pl.Series(pseudonyms(stripped.filter(keep).to_list(), key), dtype=pl.String)
    return text.replace_strict(distinct.filter(keep), digests, default=None, return_dtype=pl.String)
