"""Progress bars for long work, shown only on an interactive terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.markup import escape
from rich.progress import track

from mapwise.terminal import DataConsole, visible

T = TypeVar("T")


def steps(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar on stderr when it is a terminal (`total` for generators)."""
    console = DataConsole(stderr=True)
    yield from track(items, description=escape(visible(description)), total=total, console=console, disable=not sys.stderr.isatty(),
                     transient=True)
