"""Self-contained HTML report pages (inline CSS, figures as base64 PNG) and the PNG files behind them."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mapwise.atomic import write_bytes

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#1f2328;
padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d0d7de}
.sub{color:#57606a;margin-top:0}.kpis{display:flex;flex-wrap:wrap;gap:1rem;margin:1.2rem 0}
.kpi{background:#f6f8fa;border:1px solid #d0d7de;border-radius:8px;padding:.7rem 1rem;min-width:150px}
.kpi b{display:block;font-size:1.4rem}.kpi span{color:#57606a;font-size:.85rem}
img{max-width:100%}table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{padding:.35rem .5rem;border-bottom:1px solid #d0d7de;text-align:right}
th:nth-child(-n+2),td:nth-child(-n+2){text-align:left}th{background:#f6f8fa}
.dot{display:inline-block;width:.7rem;height:.7rem;border-radius:50%;margin-right:.4rem}.note{color:#57606a}
"""


def png_bytes(fig: Figure) -> bytes:
    """A figure rendered as PNG (its own Agg canvas: no pyplot, no global backend)."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write a figure as a PNG file, atomically; returns its path."""
    path = Path(path)
    write_bytes(path, png_bytes(fig))
    return path


def _img_tag(data: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">'


def inline_figure(fig: Figure, alt: str = "chart") -> str:
    """A figure as an <img> with its PNG inline."""
    return _img_tag(png_bytes(fig), alt)


def inline_png(path: str | Path) -> str:
    """A PNG file as an inline <img> (empty when the file is not there: a plot that had nothing to draw)."""
    path = Path(path)
    return _img_tag(path.read_bytes(), path.stem) if path.is_file() else ""


def num(value: object, digits: int = 3) -> str:
    """A table cell: floats rounded, None as a dash, anything else escaped."""
    return "–" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else html.escape(str(value))


def table(header: list[str], rows: list[list[str]]) -> str:
    """An HTML table; the header is escaped here, the cells are HTML already."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def page(title: str, intro: str, body: str, heading: str | None = None) -> str:
    """A whole page: `title` in the tab (and as the heading unless `heading` is given), `intro` (HTML) under it."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body><h1>{html.escape(heading or title)}</h1>"
            f'<p class="sub">{intro}</p>{body}</body></html>\n')
