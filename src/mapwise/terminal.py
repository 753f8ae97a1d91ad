"""Text for a terminal, when it may hold data: rich markup is never interpreted and control characters are shown,
not sent, so a value such as `[link=http://evil.example/]x[/link]`, `[/x]` or an ESC/OSC sequence prints as
what it is."""

from __future__ import annotations

import re

from rich.console import Console
from rich.text import Text

# C0 and C1 controls (newline and tab kept), DEL, and the invisible format characters that reorder or hide text
_HIDDEN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")


def visible(text: str) -> str:
    """`text` with every control or invisible format character written as its escape (`\\x1b`, `\\u202e`)."""
    return _HIDDEN.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)


class DataConsole(Console):
    """A rich Console for output that carries data: no markup, emoji codes or highlighting, and every string it
    renders (cells, titles, lines) passed through `visible`. Style comes from `style=` or `Text`, never markup."""

    def __init__(self, **kwargs) -> None:
        super().__init__(markup=False, emoji=False, highlight=False, **kwargs)

    def render_str(self, text: str, **kwargs) -> Text:
        kwargs.update(markup=False, emoji=False, highlight=False)
        return super().render_str(visible(text), **kwargs)
