"""Files the service watches while it runs: the pseudonymisation key and the forget log.

The service starts without a key (on a fresh clone the first pipeline run creates it) and answers 503
with the reason until it has one; the key is looked for again on each request until found, and never
created here. The forget log is read again whenever it changes; a forgotten customer is answered as an
unknown one.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from mapwise.errors import MapwiseError
from mapwise.privacy.forget import forgotten
from mapwise.privacy.pseudonym import KEY_ENV, load_key
from mapwise.serving.failures import first_line, reason

log = logging.getLogger(__name__)
NO_KEY = ("no pseudonymisation key yet: run the pipeline once (make demo, or the pipeline flow) to create it, "
          f"or set ${KEY_ENV} to the key used at ingestion")


@dataclass
class KeyWatch:
    """The pseudonymisation key, looked for until it exists: never created here (a fresh key would match no one)."""

    key_file: Path | None = None
    key: bytes | None = None
    missing: str = NO_KEY

    def get(self) -> bytes | None:
        """The key once found ($MAPWISE_HMAC_KEY or the key file, read again until then); None and `missing` before."""
        if self.key is None and self.key_file is not None:
            if not os.environ.get(KEY_ENV) and not self.key_file.exists():
                self.missing = NO_KEY
                return None
            try:
                self.key = load_key(self.key_file, create=False)
                log.info("pseudonymisation key found")
            except (MapwiseError, OSError) as err:  # too short, half-written, unreadable: told, and tried again
                self.missing = reason(err)
        return self.key


@dataclass
class ForgetWatch:
    """The forget log (pseudonyms), read again whenever it changes: a forgotten customer is answered as an unknown one,
    even by a model trained before the request."""

    path: Path | None = None
    stamp: int | None = None
    ids: frozenset[str] = frozenset()

    def get(self) -> frozenset[str]:
        if self.path is None:
            return self.ids
        try:
            stamp = self.path.stat().st_mtime_ns
        except OSError:
            stamp = None
        if stamp != self.stamp:
            try:
                self.ids, self.stamp = forgotten(self.path), stamp
            except (MapwiseError, OSError) as err:  # half-written or unreadable: keep the last good list, say so
                log.warning("forget log not read: %s", first_line(err))
        return self.ids

    def hide(self, pseudonyms: list[str]) -> list[str]:
        """The pseudonyms with forgotten ones blanked out (a blank matches no customer)."""
        gone = self.get()
        return [p if p not in gone else "" for p in pseudonyms] if gone else pseudonyms
