"""How the service tells a failure: the error's first line, with server paths cut to their last part."""

from __future__ import annotations

import re

PATH = re.compile(r"(?<![\w:.~])/(?:[^\s/'\"(),;:]+/)+([^\s/'\"(),;:]*)")  # an absolute path: kept is its last part


def first_line(err: BaseException) -> str:
    return str(err).splitlines()[0][:300] if str(err).strip() else type(err).__name__
