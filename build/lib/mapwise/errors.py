"""The one error type that reaches users: a one-line message, never a traceback."""

from __future__ import annotations

from pydantic import ValidationError


class MapwiseError(Exception):
    """A user mistake or unreadable input, told in one line that names the file and the problem."""


def describe(err: ValidationError) -> str:
    """A pydantic error as 'dotted.key: problem', for one-line messages."""
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = "unknown key" if first["type"] == "extra_forbidden" else first["msg"].removeprefix("Value error, ")
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{where}: {msg}{more}"
