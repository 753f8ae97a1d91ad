"""The one error type that reaches users: a one-line message, never a traceback."""

from __future__ import annotations

from pydantic import ValidationError

MAX_MESSAGE = 1000  # characters of an error message; whatever a message echoes stays a preview


def preview(text: str, limit: int = 80) -> str:
    """`text` cut to `limit` characters, saying how long it was: what errors, reasons and logs echo."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def one_line(text: str, limit: int = 80) -> str:
    """`text` for a one-line message: whitespace collapsed, unprintables escaped, then a `preview`."""
    flat = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in " ".join(text.split()))
    return preview(flat, limit)


class MapwiseError(Exception):
    """A user mistake or unreadable input, told in one line that names the file and the problem."""

    def __init__(self, message: object = "") -> None:
        super().__init__(preview(str(message), MAX_MESSAGE))


def describe(err: ValidationError) -> str:
    """A pydantic error as 'dotted.key: problem', for one-line messages."""
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = "unknown key" if first["type"] == "extra_forbidden" else first["msg"].removeprefix("Value error, ")
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{where}: {msg}{more}"
