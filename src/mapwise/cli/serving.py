"""Serving: `serve` answers real-time recommendations over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mapwise.cli.common import ParamsOption, console, friendly
from mapwise.params import load_params

app = typer.Typer()


@app.command("serve")
@friendly
def serve_command(
    params_file: ParamsOption = Path("params.yaml"),
    model: Annotated[str | None, typer.Option(help="models:/<name>@<alias> or a bundle folder (default: serve.model)")] = None,
    host: Annotated[str | None, typer.Option(help="default: serve.host")] = None,
    port: Annotated[int | None, typer.Option(help="default: serve.port")] = None,
    workers: Annotated[int | None, typer.Option(help="default: serve.workers")] = None,
) -> None:
    """Serve real-time recommendations over HTTP (docs at /docs), following the champion alias."""
    import os
    from functools import partial

    import uvicorn

    from mapwise.serving.http_limits import BoundedHttpToolsProtocol
    from mapwise.serving.app import MODEL_ENV, PARAMS_ENV
    from mapwise.serving.keepers import source_from

    params = load_params(params_file)
    source_from(params, model)  # a bad model reference fails here, in one line; no key yet is a 503 until there is one
    os.environ[PARAMS_ENV] = str(params_file.resolve())
    if model:
        os.environ[MODEL_ENV] = model
    s = params.serve
    console.print(f"mapwise serving on http://{host or s.host}:{port or s.port} (docs: /docs)", highlight=False)
    http = partial(BoundedHttpToolsProtocol, max_header_bytes=s.max_header_bytes,
                   request_timeout=s.request_timeout_seconds)  # httptools, with read bounds
    uvicorn.run("mapwise.serving.app:app_from_env", factory=True, host=host or s.host, port=port or s.port,
                workers=workers or s.workers, loop="uvloop", http=http, ws="none", access_log=False,
                log_level="warning")
