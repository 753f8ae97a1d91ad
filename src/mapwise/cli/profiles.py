"""Profiles: `profile show` looks one customer up, by their own id or by pseudonym."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.table import Table

from mapwise import columns as c
from mapwise.cli.common import console, friendly
from mapwise.errors import MapwiseError
from mapwise.params import load_params

app = typer.Typer()
profile_app = typer.Typer(help="Look up customer profiles.", no_args_is_help=True)
app.add_typer(profile_app, name="profile")
_RECENT_SHOWN = 10  # recent items listed by `profile show`


@profile_app.command("show")
@friendly
def profile_show(
    customer: Annotated[str, typer.Argument(help="customer id: as in your own data (pseudonymised here with the "
                                                 "ingest key) or its pseudonym")],
    profiles: Annotated[Path, typer.Option(help="profiles table")] = Path("data/profiles/profiles.parquet"),
    params_file: Annotated[Path, typer.Option(
        "--params", help="params file (ingest.key_file: the pseudonymisation key, unless $MAPWISE_HMAC_KEY is set)",
    )] = Path("params.yaml"),
) -> None:
    """Show one customer's profile: RFM, segment, interests and most recent items.

    The id you type is pseudonymised on the fly with the ingest key (never stored, printed or logged) and
    looked up; failing that, it is looked up as a pseudonym.
    """
    from mapwise.errors import one_line
    from mapwise.params import IngestParams
    from mapwise.privacy.pseudonym import load_key, pseudonym

    key_file = (load_params(params_file).ingest.key_file if params_file.exists()
                else IngestParams.model_fields["key_file"].default)
    try:
        key, no_key = load_key(key_file, create=False), ""  # never created here: a fresh key would match no one
    except MapwiseError as err:
        key, no_key = None, str(err)
    as_raw = pseudonym(customer.strip(), key) if key and customer.strip() else None
    try:
        table = pl.scan_parquet(profiles).filter(pl.col(c.CUSTOMER_ID).is_in([as_raw or customer, customer])).collect()
    except (OSError, pl.exceptions.PolarsError) as err:
        problem = type(err).__name__
        raise MapwiseError(f"{profiles}: cannot read profiles ({problem}; run the profile stage first?)") from None
    if table.is_empty():
        tried = ("tried as your own id (pseudonymised with the ingest key) and as a pseudonym" if as_raw else
                 f"tried as a pseudonym only; as your own id it needs the key: {no_key}" if no_key else
                 "tried as a pseudonym")
        raise MapwiseError(f"{profiles}: no profile for customer '{one_line(customer)}' ({tried})")
    mine = table.filter(pl.col(c.CUSTOMER_ID) == as_raw) if as_raw else table.clear()
    row = (table if mine.is_empty() else mine).row(0, named=True)  # your own id first, should a pseudonym also match
    items = row.pop(c.RECENT_ITEMS)
    shown = ("… " if len(items) > _RECENT_SHOWN else "") + ", ".join(items[-_RECENT_SHOWN:])
    found = " (found by your own id)" if row[c.CUSTOMER_ID] == as_raw else ""
    out = Table(title=f"customer {row[c.CUSTOMER_ID]}{found}", title_justify="left", show_header=False)
    out.add_column("field", style="bold", overflow="fold")
    out.add_column("value", overflow="fold")
    for name, value in row.items():
        text = f"{value:,.2f}" if isinstance(value, float) else "–" if value is None else str(value)
        out.add_row(name, text)
    out.add_row(f"{c.RECENT_ITEMS} ({len(items)}, oldest first)", shown)
    console.print(out)
