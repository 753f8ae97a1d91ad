"""The `mapwise` command line: check and try mappings, inspect contracts, params and reports.

Pipeline stages run through `dvc repro` (or `python -m pipelines.<verb>`); this tool helps write
and inspect what they use.
"""

# The docstring above is the root help. Each domain module holds its commands and groups on its own unnamed Typer
# `app`; mounted here without a name, they merge into the root, so the command paths are the domain's own
# (`mapwise serve`, `mapwise model list`). Shared pieces (console, `friendly`, `ParamsOption`) live in `common`.

from __future__ import annotations

import typer
from typer.core import TyperGroup

from mapwise.cli import audiences, models, params, privacy, profiles, recommend, reports, serving, sources, synth


class _CommandsThenGroups(TyperGroup):
    """List the commands before the groups, each in mounting order, as Typer does for the commands of one app."""

    def list_commands(self, ctx: typer.Context) -> list[str]:
        names = super().list_commands(ctx)
        groups = [n for n in names if isinstance(self.commands[n], TyperGroup)]
        return [n for n in names if n not in groups] + groups


app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False, cls=_CommandsThenGroups)
# The order is the help's: commands contracts, tune, serve, target, score, forget, synth; groups mapping, report,
# params, profile, privacy, model.
for _domain in (sources, reports, params, profiles, recommend, serving, audiences, privacy, synth, models):
    app.add_typer(_domain.app)

__all__ = ["app"]
