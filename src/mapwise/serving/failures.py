"""How the service tells a failure: the error's first line, with server paths cut to their last part."""

from __future__ import annotations

import re

_PATH = re.compile(r"(?<![\w:.~])/(?:[^\s/'\"(),;:]+/)+([^\s/'\"(),;:]*)")  # an absolute path: kept is its last part


def first_line(err: BaseException) -> str:
    """The error's first line (its type when it has no message): for the service's own log."""
    return str(err).splitlines()[0][:300] if str(err).strip() else type(err).__name__


def reason(err: BaseException) -> str:
    """The first line with server paths cut to their last part: what a client may read."""
    return _PATH.sub(r"\1", first_line(err))
