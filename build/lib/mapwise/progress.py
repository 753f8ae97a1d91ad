"""Progress bars for long work, shown only on an interactive terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import track

T = TypeVar("T")


def steps(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar on stderr when it is a terminal (`total` for generators)."""
    console = Console(stderr=True)
    yield from track(items, description=description, total=total, console=console, disable=not sys.stderr.isatty(),
                     transient=True)
