"""The `mapwise` command: every command of `mapwise.cli`, plus `watch` and `notify`, which talk to Prefect."""

from __future__ import annotations

import hashlib
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from flows.events import announce, use_local_server
from mapwise.cli import app
from mapwise.cli.common import ParamsOption, console, friendly
from mapwise.errors import MapwiseError
from mapwise.sources.incoming import Watcher, display, open_location, source_of
from mapwise.params import load_params

__all__ = ["app"]

orchestrate = typer.Typer()  # mounted below without a name: `mapwise watch`, `mapwise notify`


@orchestrate.command("watch")
@friendly
def watch(
    incoming: Annotated[str | None, typer.Argument(help="drop folder or URL (default: orchestrate.incoming)")] = None,
    params_file: ParamsOption = Path("params.yaml"),
    once: Annotated[bool, typer.Option(help="look twice, announce what is ready, and exit")] = False,
) -> None:
    """Watch a drop folder (<dir>/<source>/<file>): each new file, once complete, becomes a Prefect event that starts `retrain`."""
    params = load_params(params_file)
    p = params.orchestrate
    url = incoming or p.incoming
    api = use_local_server(p)
    fs, root = open_location(url)
    fs.makedirs(root, exist_ok=True)
    state = Path(".mapwise/watch") / f"{hashlib.sha256(url.encode()).hexdigest()[:12]}.json"
    watcher = Watcher(url, state)
    console.print(f"watching {url} every {p.poll_seconds:g} s; events go to {api}" + ("" if once else " (Ctrl-C stops)"),
                  highlight=False, soft_wrap=True)
    polls = 0
    try:
        while True:
            for path in watcher.poll():
                source = source_of(path)
                when = datetime.now().strftime("%H:%M:%S")
                if source not in params.ingest.sources:
                    console.print(f"{when} {path}: ignored, not in a source folder ({', '.join(params.ingest.sources)})",
                                  style="yellow", highlight=False, soft_wrap=True)
                    continue
                announce(path, source)
                console.print(f"{when} {path}: announced ({source})", highlight=False, soft_wrap=True)
            polls += 1
            if once and polls == 2:
                return
            time.sleep(p.poll_seconds)
    except KeyboardInterrupt:
        console.print("stopped")


@orchestrate.command("notify")
@friendly
def notify(
    file: Annotated[str, typer.Argument(help="the file that arrived: a path or an fsspec URL")],
    source: Annotated[str | None, typer.Option(help="the mapping that reads it (default: its folder's name)")] = None,
    params_file: ParamsOption = Path("params.yaml"),
) -> None:
    """Announce one new file (for other systems to call): the `retrain` deployment starts on it."""
    params = load_params(params_file)
    fs, path = open_location(file)
    if not fs.exists(path):
        raise MapwiseError(f"{file}: no such file")
    where = display(fs, path)
    source = source or source_of(where)
    if source not in params.ingest.sources:
        raise MapwiseError(f"{file}: '{source}' is not a source ({', '.join(params.ingest.sources)}); pass --source")
    api = use_local_server(params.orchestrate)
    announce(where, source)
    console.print(f"announced {where} ({source}) to {api}", highlight=False, soft_wrap=True)


app.add_typer(orchestrate)
