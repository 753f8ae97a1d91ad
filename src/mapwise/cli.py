"""The `mapwise` command line: check and try mappings, inspect contracts, params and reports.

Pipeline stages run through `dvc repro` (or `python -m pipelines.<verb>`); this tool helps write
and inspect what they use.
"""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mapwise import columns as c
from mapwise.sources.contracts import CONTRACTS
from mapwise.errors import MapwiseError
from mapwise.sources.ingest import DUPLICATE_ROW, Limits, ingest_source
from mapwise.sources.mapping.expressions import FILE_COLUMN, LINE_COLUMN
from mapwise.sources.mapping.load import load_mapping
from mapwise.params import load_params
from mapwise.privacy.release import context_tables, held_back, release
from mapwise.report import print_evaluate_report, print_ingest_report

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
mapping_app = typer.Typer(help="Check and try source mappings.", no_args_is_help=True)
report_app = typer.Typer(help="Show stage reports.", no_args_is_help=True)
params_app = typer.Typer(help="Check params.yaml.", no_args_is_help=True)
profile_app = typer.Typer(help="Look up customer profiles.", no_args_is_help=True)
privacy_app = typer.Typer(help="Audit artifacts for personal data.", no_args_is_help=True)
app.add_typer(mapping_app, name="mapping")
app.add_typer(report_app, name="report")
app.add_typer(params_app, name="params")
app.add_typer(profile_app, name="profile")
app.add_typer(privacy_app, name="privacy")
console = Console()


def _friendly(fn: Callable) -> Callable:
    """Turn MapwiseError into one line on stderr and exit status 1."""

    @wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MapwiseError as err:
            print(f"mapwise: {err}", file=sys.stderr)
            raise typer.Exit(1) from None

    return run


@mapping_app.command("check")
@_friendly
def mapping_check(paths: Annotated[list[Path], typer.Argument(help="mapping YAML files")]) -> None:
    """Validate mapping files: keys, tables, columns and expressions."""
    for path in paths:
        mapping = load_mapping(path)
        tables = ", ".join(mapping.tables)
        console.print(f"{path}: ok ({mapping.name} -> {tables})", highlight=False, soft_wrap=True)


@mapping_app.command("preview")
@_friendly
def mapping_preview(
    mapping_file: Annotated[Path, typer.Argument(help="mapping YAML file")],
    data_file: Annotated[Path, typer.Argument(help="one raw file of that source")],
    rows: Annotated[int, typer.Option(help="rows to show per table")] = 5,
    params_file: Annotated[Path, typer.Option("--params", help="params file (ingest limits; defaults without it)")] = Path(
        "params.yaml"),
) -> None:
    """Apply a mapping to one file and show what each table would get and what it would reject.

    The file goes through ingest's own code (parsing, casts, filters, duplicates, contract checks), so the
    counts are the ones ingest would report for it alone. Pseudonyms use a throwaway key, so they differ
    from the pipeline's.
    """
    mapping = load_mapping(mapping_file)
    limits = Limits.of(load_params(params_file).ingest if params_file.exists() else None)
    key = secrets.token_bytes(32)
    accepted, _, report = ingest_source([(data_file, data_file.name)], mapping, key, {}, limits)
    with pl.Config(tbl_cols=-1, tbl_width_chars=160, fmt_str_lengths=40):
        for table, counts in report["tables"].items():
            console.rule(f"{table}: {counts['accepted']:,} accepted, {counts['quarantined']:,} rejected of "
                         f"{counts['read']:,}")
            print(accepted[table].drop(LINE_COLUMN, FILE_COLUMN, strict=False).head(rows))
            for reason, n in counts["reasons"].items():
                print(f"  {n:>9,}  {reason}")
            if counts["reasons"].get(DUPLICATE_ROW) and mapping.tables[table].duplicates == "quarantine":
                print(f"  ('{DUPLICATE_ROW}': identical to an earlier row; if such rows are distinct events, e.g. "
                      f"repeat purchases, set tables.{table}.duplicates: keep)")


@app.command("contracts")
def contracts(table: Annotated[str | None, typer.Argument(help="one table; all when omitted")] = None) -> None:
    """Show the canonical tables: columns, types, nullability and checks."""
    if table is not None and table not in CONTRACTS:
        print(f"mapwise: unknown table '{table}' (known: {', '.join(CONTRACTS)})", file=sys.stderr)
        raise typer.Exit(1)
    for contract in CONTRACTS.values() if table is None else [CONTRACTS[table]]:
        out = Table(title=f"{contract.name} ({contract.kind}, key {contract.key})", title_justify="left")
        for name in ("column", "type", "required", "checks"):
            out.add_column(name, overflow="fold")  # at 80 columns (logs) a long name folds, never ends in "…"
        for name, col in contract.schema.columns.items():
            checks = ", ".join(str(ch.error or ch.name) for ch in col.checks)
            unique = ["unique"] if col.unique else []
            out.add_row(name, str(col.dtype), "yes" if not col.nullable else "", ", ".join([*unique, checks]).strip(", "))
        console.print(out)


@report_app.command("ingest")
@_friendly
def report_ingest(path: Annotated[Path, typer.Argument(help="report file")] = Path("reports/ingest.json")) -> None:
    """Summarise an ingest report: rows read, accepted and quarantined per source and table."""
    print_ingest_report(_read_json(path), console)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise MapwiseError(f"{path}: cannot read the report ({err})") from None


@report_app.command("evaluate")
@_friendly
def report_evaluate(path: Annotated[Path, typer.Argument(help="report file")] = Path("reports/evaluate.json")) -> None:
    """The quality table: every model and baseline, NDCG@10 with its bootstrap interval."""
    print_evaluate_report(_read_json(path), console=console)


@app.command("tune")
@_friendly
def tune_command(
    params_file: Annotated[Path, typer.Option("--params", help="params file")] = Path("params.yaml"),
    trials: Annotated[int | None, typer.Option(help="trials to run (default: tune.trials)")] = None,
) -> None:
    """Search train hyper-parameters with Optuna (space in params `tune`), each trial an MLflow child run.

    Needs the split stage's output. Writes the best values to tune.out and as a params fragment beside it.
    """
    import tempfile

    import yaml

    from mapwise.recommend.split import load_split
    from mapwise.recommend.tune import params_fragment, tune

    params = load_params(params_file)
    split = load_split(params.split.out_dir)
    with tempfile.TemporaryDirectory(prefix="mapwise-tune-") as work:
        result = tune(split, params, work_dir=Path(work), trials=trials)
    out = params.tune.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": params.tune.model, "best_val_ndcg@10": round(result.best_value, 5),
                               "best_params": result.best_params, "trials": result.trials, "pruned": result.pruned,
                               "mlflow_parent_run": result.parent_run_id}, indent=2) + "\n")
    fragment = out.with_suffix(".params.yaml")
    fragment.write_text(yaml.safe_dump(params_fragment(result.best_params), sort_keys=False))
    console.print(
        f"best validation NDCG@10 {result.best_value:.4f} after {result.trials} trials ({result.pruned} pruned).\n"
        f"Adopt it by merging {fragment} into params.yaml, then `dvc repro`.", highlight=False, soft_wrap=True,
    )


@params_app.command("check")
@_friendly
def params_check(path: Annotated[Path, typer.Argument(help="params file")] = Path("params.yaml")) -> None:
    """Validate params.yaml against the typed model."""
    params = load_params(path)
    console.print(f"{path}: ok (sections: {', '.join(type(params).model_fields)})", highlight=False, soft_wrap=True)


_RECENT_SHOWN = 10  # recent items listed by `profile show`


@profile_app.command("show")
@_friendly
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


# -- models: registry, serving, batch scoring ----------------------------------------------------
model_app = typer.Typer(help="The model registry: versions, promotion through the gate, rollback.", no_args_is_help=True)
app.add_typer(model_app, name="model")
ParamsOption = Annotated[Path, typer.Option("--params", help="params file")]


@model_app.command("list")
@_friendly
def model_list(params_file: ParamsOption = Path("params.yaml")) -> None:
    """Every registered version: aliases, architecture, gate decision and lineage."""
    from datetime import UTC, datetime

    from mapwise.bundles.registry import SERVED_REASON, versions

    params = load_params(params_file)
    name = params.register.model_name
    out = Table(title=f"{name} (ndcg: validation NDCG@10)", title_justify="left")
    # 80 columns (logs): names and hashes stay whole (one alias a line), only the time wraps, never a "…"
    for column in ("ver", "aliases", "model", "when", "ndcg", "gate", "data", "commit"):
        out.add_column(column, overflow="fold", no_wrap=column != "when")
    for v in versions(params.tracking, name):
        t = v["tags"]
        when = datetime.fromtimestamp(v["created"] / 1000, UTC).strftime("%m-%d %H:%M")
        out.add_row(v["version"], "\n".join(v["aliases"]) or "–", t.get("model", "?"), when, t.get("val_ndcg_at_10", "?")[:6],
                    t.get("gate.decision", "–"),
                    t.get("data_version", "?")[:8], t.get("git_commit", "?")[:7])
    console.print(out)
    champion = next((v for v in versions(params.tracking, name) if "champion" in v["aliases"]), None)
    if champion and champion["tags"].get(SERVED_REASON):
        console.print(f"Champion, version {champion['version']}: {escape(champion['tags'][SERVED_REASON])}", soft_wrap=True,
                      highlight=False)
    console.print("Gate reasons and figures: reports/promote.json, and the MLflow runs tagged mapwise.stage=promote.")


def _decide_and_apply(params, decision) -> None:
    from mapwise.bundles.registry import apply

    apply(params.tracking, decision)
    style = "green" if decision.promoted else "yellow"
    console.print(f"[{style}]{decision.action}[/]: {decision.reason}. Champion: version {decision.champion_after}.",
                  soft_wrap=True)


@model_app.command("promote")
@_friendly
def model_promote(
    params_file: ParamsOption = Path("params.yaml"),
    version: Annotated[str | None, typer.Option(help="version to judge (default: the challenger)")] = None,
    force: Annotated[bool, typer.Option("--force", help="skip the quality gate (parity is still required)")] = False,
) -> None:
    """Run the promotion gate: the challenger becomes champion only if it beats it on the same test data."""
    from mapwise.recommend.gate import gate
    from mapwise.recommend.slices import customer_slices
    from mapwise.recommend.split import load_split

    params = load_params(params_file)
    split = load_split(params.split.out_dir)
    decision = gate(params.tracking, params.register.model_name, split, {} if force else customer_slices(params),
                    params.promote, params.evaluate, params.serve.cache_dir, version=version, force=force)
    _decide_and_apply(params, decision)


@model_app.command("rollback")
@_friendly
def model_rollback(params_file: ParamsOption = Path("params.yaml")) -> None:
    """Give `champion` back to the previous champion (recorded like any promotion)."""
    from mapwise.bundles.registry import rollback_decision

    params = load_params(params_file)
    _decide_and_apply(params, rollback_decision(params.tracking, params.register.model_name))


@app.command("serve")
@_friendly
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


@app.command("target")
@_friendly
def target_command(
    params_file: ParamsOption = Path("params.yaml"),
    model: Annotated[str | None, typer.Option(help="models:/<name>@<alias> or an uplift bundle folder "
                                                    "(default: the champion of <register.target_prefix>-uplift)")] = None,
    out: Annotated[Path | None, typer.Option(help=".parquet or .csv (default: target.out)")] = None,
) -> None:
    """Write the next best action for every customer (an arm, or no contact) with its expected uplift: an audience
    for a campaign tool."""
    from mapwise.serving.keepers import source_from
    from mapwise.serving.audience import next_best_actions, write_actions
    from mapwise.serving.targeting import TargetModel, uplift_model_name

    params = load_params(params_file)
    source = source_from(params, model or f"models:/{uplift_model_name(params.register.target_prefix)}@champion")
    version = source.latest()
    if version is None:
        raise MapwiseError(f"{source.description}: no such model version; run `dvc repro` first")
    out = out or params.target.out
    customers, context = context_tables(params.ingest.canonical_dir, params.profile.out)
    actions, held = release(next_best_actions(TargetModel(source.fetch(version))), params.privacy, customers=customers,
                         context=context, what=f"the audience {out}")
    done = write_actions(actions, out)
    actions = ", ".join(f"{k} {v:,}" for k, v in done["actions"].items())
    console.print(f"{done['customers']:,} customers -> {done['out']} ({actions}; model {source.description}, "
                  f"version {version}){held_back(held)}", highlight=False, soft_wrap=True)


@app.command("score")
@_friendly
def score_command(
    params_file: ParamsOption = Path("params.yaml"),
    model: Annotated[str | None, typer.Option(help="models:/<name>@<alias> or a bundle folder (default: champion)")] = None,
    k: Annotated[int | None, typer.Option(help="items per customer (default: score.k)")] = None,
    segment: Annotated[str | None, typer.Option(help="only this RFM segment (from the profiles)")] = None,
    out: Annotated[Path | None, typer.Option(help=".parquet or .csv (default: score.out)")] = None,
    include_purchased: Annotated[bool, typer.Option("--include-purchased", help="allow items already bought")] = False,
) -> None:
    """Write top-K recommendations for every customer (or a segment): an audience for a campaign tool."""
    from mapwise.serving.audience import segment_customers, write_audience
    from mapwise.bundles.format import load_bundle
    from mapwise.serving.recommendations import Recommender
    from mapwise.serving.keepers import source_from

    params = load_params(params_file)
    source = source_from(params, model or params.serve.model)
    version = source.latest()
    if version is None:
        raise MapwiseError(f"{source.description}: no such model version; run `dvc repro` first")
    rec = Recommender(load_bundle(source.fetch(version)), params.serve.retrieval)
    chosen = segment_customers(params.profile.out, segment) if segment else sorted(rec.customers)
    p = params.score
    out = out or p.out
    tables = context_tables(params.ingest.canonical_dir, params.profile.out)
    allowed, held = release(pl.DataFrame({c.CUSTOMER_ID: chosen}, schema={c.CUSTOMER_ID: pl.String}), params.privacy,
                            customers=tables[0], context=tables[1], what=f"the audience {out}")
    done = write_audience(rec, allowed[c.CUSTOMER_ID].to_list(), k or p.k, out,
                          exclude_purchased=p.exclude_purchased and not include_purchased)
    console.print(f"{done['rows']:,} recommendations for {done['customers']:,} customers -> {done['out']} "
                  f"(model {source.description}, version {version}){held_back(held)}", highlight=False, soft_wrap=True)


@app.command("forget")
@_friendly
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
@_friendly
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


@app.command("synth")
@_friendly
def synth_command(
    rows: Annotated[int, typer.Option("--rows", min=1, help="synthetic profiles to write")],
    out: Annotated[Path | None, typer.Option(help=".parquet or .csv (default: synth.out)")] = None,
    seed: Annotated[int, typer.Option(help="sampling seed: the same seed gives the same rows")] = 0,
    suppress: Annotated[bool, typer.Option("--suppress-small-groups", help="drop rows in groups smaller than k instead "
                                                                          "of refusing (privacy.k_anonymity)")] = False,
    params_file: ParamsOption = Path("params.yaml"),
) -> None:
    """Write synthetic customer profiles from the GAN the synth stage trained: they pass the profile contract, none is
    a near-copy of a real customer, and the table must be k-anonymous over privacy.k_anonymity's quasi-identifiers."""
    from mapwise.atomic import replacing
    from mapwise.privacy.kanon import enforce_k_anonymity
    from mapwise.synth.gan import CTGAN
    from mapwise.synth.profiles import sample_profiles

    params = load_params(params_file)
    s = params.synth
    if s is None:
        raise MapwiseError(f"{params_file}: no `synth` section")
    out = out or s.out
    if out.suffix not in (".parquet", ".csv"):
        raise MapwiseError(f"{out}: the file must end in .parquet or .csv")
    try:
        meta = json.loads((s.out_dir / "synth.json").read_text())
        model = CTGAN.load(s.out_dir)
        real = pl.read_parquet(params.profile.out)
    except (OSError, ValueError, pl.exceptions.PolarsError) as err:
        raise MapwiseError(f"no trained generator in {s.out_dir} or no profiles in {params.profile.out} "
                           f"({type(err).__name__}); run `dvc repro synth` first") from None
    profiles, drawn = sample_profiles(model, rows, real, meta["threshold"], seed=seed)  # near no real customer at all
    k = params.privacy.k_anonymity
    profiles, checked = enforce_k_anonymity(profiles, k.quasi_identifiers, k.k, "suppress" if suppress else k.on_fail,
                                            f"the synthetic table {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with replacing(out) as partial:
        profiles.write_csv(partial) if out.suffix == ".csv" else profiles.write_parquet(partial)
    suppressed = checked.get("suppressed_rows", 0)
    console.print(f"{profiles.height:,} synthetic profiles -> {out} ({drawn['dropped']:,} near-copies redrawn"
                  + (f", {suppressed:,} rows in groups smaller than k={k.k} dropped" if suppressed else "")
                  + ")", highlight=False, soft_wrap=True)
