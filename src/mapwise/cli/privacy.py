"""Privacy: `forget` erases customers (and, asked to, the DVC history holding them); `privacy scan` audits artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mapwise.cli.common import ParamsOption, console, friendly
from mapwise.errors import MapwiseError
from mapwise.params import load_params

app = typer.Typer()
privacy_app = typer.Typer(help="Audit artifacts for personal data.", no_args_is_help=True)
app.add_typer(privacy_app, name="privacy")


@app.command("forget")
@friendly
def forget_command(
    customers: Annotated[list[str] | None, typer.Argument(help="raw customer ids, as written in the source files")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="a batch of requests: one raw id per line, or a CSV "
                                                              "with a customer_id column")] = None,
    purge_history: Annotated[bool, typer.Option("--purge-history", help="also delete the older DVC versions of data "
                                                                        "and models that hold them (cache and remote)")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="purge history without asking")] = False,
    params_file: ParamsOption = Path("params.yaml"),
) -> None:
    """Forget customers: log the request (pseudonyms only), remove their rows from canonical data, profiles, splits,
    audiences and model bundles now, and mark the models trained on them; the next `dvc repro` retrains without them.

    The raw files are not modified: ingest leaves logged customers out. The service answers them as unknown at once.
    """
    from mapwise.privacy.erasure import RETRAIN_TAG, forget_customers, pseudonyms_of
    from mapwise.privacy.forget import read_request_file

    params = load_params(params_file)
    raw = [*(customers or []), *(read_request_file(file) if file else [])]
    if not raw:
        raise MapwiseError("no customer to forget: give raw customer ids, or --file with one per line")
    ids = pseudonyms_of(params, raw)
    done = forget_customers(params, ids, f"file:{file.name}" if file else "cli")
    rows = sum(done["files"].values())
    console.print(f"{len(done['requests'])} request(s) logged in {params.privacy.forget_log}"
                  + (f" ({done['already_forgotten']} already forgotten)" if done["already_forgotten"] else "")
                  + f"; {rows:,} row(s) removed from {len(done['files'])} file(s); "
                  + f"{len(done['model_versions_marked'])} model version(s) tagged {RETRAIN_TAG}", highlight=False,
                  soft_wrap=True)
    for path, n in sorted(done["files"].items()):
        console.print(f"  {path}: {n:,} row(s) removed", highlight=False, soft_wrap=True)
    console.print("Next: `dvc repro` (or the pipeline flow) rebuilds and retrains without them; commit "
                  f"{params.privacy.forget_log}.", highlight=False, soft_wrap=True)
    if purge_history:
        _purge_history(set(ids), yes)


def _purge_history(ids: set[str], yes: bool) -> None:
    """List the older DVC versions holding these customers, warn, and delete them from the cache and the remote."""
    from mapwise.privacy.history import affected, purge, remote_path, remote_url

    repo = Path.cwd()
    remote = remote_path(repo)
    found = affected(repo, ids, cache=repo / ".dvc" / "cache", remote=remote)
    objects = found["objects"]
    if not objects:
        console.print("history: no older DVC version holds them", highlight=False)
        return
    revisions = sorted({r for o in objects for r in o["revisions"]})
    console.print(f"history: {len(objects)} stored file(s) in {len(revisions)} revision(s) hold them:", highlight=False)
    for o in objects:
        name = f"{o['output']}/{o['relpath']}" if o.get("relpath") else o["output"]
        console.print(f"  {name} ({o['md5'][:8]}, in {' and '.join(o['where'])}; "
                      f"revisions {', '.join(o['revisions'][:5])}{' ...' if len(o['revisions']) > 5 else ''})",
                      highlight=False, soft_wrap=True)
    if remote is None and remote_url(repo):
        console.print("  the default DVC remote is not a local folder: delete these objects with the store's own tools "
                      "(files/md5/<first 2>/<rest> under the remote's URL)", highlight=False, soft_wrap=True)
    console.print(f"WARNING: revisions {', '.join(revisions)} become unreproducible from storage: `dvc pull` / "
                  "`dvc checkout` fail for these files, and `dvc repro` at those revisions rebuilds them from the raw "
                  "files, which still hold the customers (their forget log did not list them).", highlight=False,
                  soft_wrap=True)
    if not yes and not typer.confirm("Delete them now?", default=False):
        console.print("history: nothing deleted", highlight=False)
        return
    removed = purge(found, cache=repo / ".dvc" / "cache", remote=remote)
    console.print(f"history: {len(removed['cache'])} object(s) deleted from the cache, {len(removed['remote'])} from "
                  "the remote", highlight=False)


@privacy_app.command("scan")
@friendly
def privacy_scan(
    ids_file: Annotated[Path, typer.Option("--ids", help="raw customer ids (one per line) that must appear nowhere")],
    paths: Annotated[list[Path] | None, typer.Argument(help="files or folders (default: every output, the reports, "
                                                            "the MLflow store and the DVC cache)")] = None,
    pii_column: Annotated[list[str] | None, typer.Option("--pii-column", help="a column name that must appear nowhere "
                                                                              "(repeatable), e.g. email")] = None,
    params_file: ParamsOption = Path("params.yaml"),
) -> None:
    """Scan artifacts for raw customer ids and PII columns: Parquet (values, names, metadata), SQLite (MLflow, Prefect),
    compressed files, ONNX, JSON, HTML, logs. Exit status 1 when anything is found."""
    from mapwise.privacy.erasure import customer_outputs
    from mapwise.privacy.scan import scan

    params = load_params(params_file)
    try:
        needles = [line.strip() for line in ids_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as err:
        raise MapwiseError(f"{ids_file}: cannot read ({err.strerror})") from None
    if not paths:
        paths = [*customer_outputs(params), Path("reports"), Path("mlflow.db"), Path(".dvc/cache"), Path(".mapwise")]
    findings = scan([p for p in paths if p.exists()], needles, pii_columns=pii_column or [])
    for f in findings:
        console.print(f"{f.file}: {f.where}", highlight=False, soft_wrap=True)  # never the id itself: it is PII
    console.print(f"{len(findings)} finding(s) in {len(paths)} path(s) for {len(needles):,} id(s)", highlight=False)
    if findings:
        raise typer.Exit(1)
