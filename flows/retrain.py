"""Flow `retrain`: a batch arrived; check it whole, add it to the DVC-tracked raw data, re-run the pipeline.

With `orchestrate.warm_start.enabled`, the pipeline runs with overrides that fine-tune the champion's
architecture from the champion's weights (`train.models` = its architecture, `train.init_from` = its version,
a short budget) instead of training every model from scratch: the same stages, the same gate on the same
test window. Only params.yaml goes back afterwards: the workspace keeps the run's outputs and reports, and
`dvc status` names the stages whose params differ, which the next plain (scheduled) run retrains from scratch.
No champion (or warm start off) means the usual full run.

A malformed batch is moved to `orchestrate.quarantine_dir` with its reason and the flow fails: nothing
is applied. The same content arriving again (any name) is found in the ledger and processed once.

    python -m flows.retrain data/incoming/online_retail/december.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import get_args

from prefect import flow, get_run_logger, task
from prefect.exceptions import FailedRun
from prefect.runtime import flow_run

from flows.pipeline import run_stages
from flows.stages import StageFailed, dvc, failed_on_error, one_at_a_time
from mapwise.sources.batches import Batch, accept, check, reject, stage
from mapwise.errors import MapwiseError
from mapwise.sources.ingest import Limits
from mapwise.sources.ledger import Ledger
from mapwise.sources.mapping.load import load_mapping
from mapwise.params import ModelName, Params, load_params
from mapwise.privacy.pseudonym import load_key
from mapwise.bundles.registry import CHAMPION, alias_version, client

STAGING = Path(".mapwise/staging")


@task(name="check", task_run_name="check", log_prints=True)
def check_batch(batch: Batch, params: Params, limits: Limits):
    """The batch alone through its source's mapping and the contracts, by ingest's limits."""
    mapping = load_mapping(params.ingest.mappings_dir / f"{batch.source}.yaml")
    result = check(batch, mapping, load_key(params.ingest.key_file), limits, params.orchestrate)
    print(result.reason)
    return result


@task(name="add", task_run_name="add", log_prints=True)
def add_batch(batch: Batch, batches_dir: Path, root: Path) -> Path:
    """Move the batch among the accepted ones and track it with DVC (`<file>.dvc` beside it).

    The commit point is `<file>.dvc`, the last thing `dvc add` writes: ingest reads only batches that have
    one. A run killed before it leaves the batch unaccepted and unrecorded, and the next retrain of the same
    file adds it again over the untracked copy; killed after it, the batch is accepted whole.
    """
    stored = accept(batch, batches_dir)
    try:
        dvc("add", ["add", "-q", str(stored)], str(root))
    except StageFailed:
        stored.unlink()
        raise
    print(f"accepted: {stored} (tracked by {stored}.dvc)")
    return stored


def warm_start_overrides(params: Params) -> tuple[dict, str]:
    """The overrides that fine-tune the champion instead of training every model from scratch, and why (or why not).

    The champion is pinned by version (`models:/<name>/<version>`), so the run's params say exactly what it started from.
    """
    w = params.orchestrate.warm_start
    if not w.enabled:
        return {}, "orchestrate.warm_start.enabled is false: every model trains from scratch"
    name = params.register.model_name
    c = client(params.tracking)
    version = alias_version(c, name, CHAMPION)
    if version is None:
        return {}, f"'{name}' has no champion yet: every model trains from scratch"
    model = c.get_model_version(name, version).tags.get("model")
    if model not in get_args(ModelName):
        return {}, f"{name} version {version} (the champion) names no sequence model ({model!r}): every model trains from scratch"
    overrides = {"train.models": [model], "train.init_from": f"models:/{name}/{version}", "train.min_steps": 0,
                 "train.max_steps": w.max_steps, "train.val_every_steps": w.val_every_steps, "train.patience": w.patience,
                 "train.warmup_steps": w.warmup_steps}
    if params.register.candidate not in ("best", model):
        overrides["register.candidate"] = model
    return overrides, (f"warm start: fine-tuning the champion ({name} version {version}, {model}) for at most "
                       f"{w.max_steps} steps; the scheduled run retrains every model from scratch")


@flow(name="retrain", log_prints=True)
def retrain(path: str, source: str | None = None, params_file: str = "params.yaml") -> dict:
    """A new batch: check it, add it to the raw data, re-run the pipeline; the gate decides on promotion.

    Args:
        path: the file that arrived (a local path or an fsspec URL).
        source: which mapping reads it; default: the name of the folder it arrived in.
        params_file: the params file, relative to the repository.
    """
    root = Path.cwd()
    return failed_on_error(lambda: _retrain(root, path, source, params_file))


def _retrain(root: Path, path: str, source: str | None, params_file: str) -> dict:
    params = load_params(root / params_file)
    p = params.orchestrate
    ledger = Ledger(p.ledger)
    with one_at_a_time(root):
        limits = Limits.of(params.ingest)
        batch = stage(path, STAGING, params.ingest.sources, p.incoming, source, limits.max_bytes)
        seen = ledger.find(batch.sha256)
        if seen:
            batch.path.unlink()
            print(f"{path}: same content as a batch {seen['status']} at {seen['at']} ({seen['stored']}): processed once, skipped")
            return {"status": "duplicate", "of": seen}
        entry = {"sha256": batch.sha256, "origin": path, "source": batch.source, "flow_run_id": flow_run.get_id()}
        try:
            result = check_batch(batch, params, limits)
            if not result.ok:
                stored = reject(batch, p.quarantine_dir, result)
                ledger.record(**entry, status="rejected", stored=str(stored), reason=result.reason)
                raise MapwiseError(f"{path}: rejected, nothing applied: {result.reason} (kept in {stored})")
            stored = add_batch(batch, params.ingest.batches_dir, root)
        finally:  # a check or add that crashed leaves no staged copy behind: the same file can simply arrive again
            batch.path.unlink(missing_ok=True)
        ledger.record(**entry, status="accepted", stored=str(stored), rows=result.report["rows_read"])
        overrides, why = warm_start_overrides(params)
        get_run_logger().info(why)
        return {"status": "accepted", "stored": str(stored), "warm_start": why,
                **run_stages(root, root / params_file, overrides, keep_outputs=True)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.retrain", description=retrain.__doc__.splitlines()[0])
    parser.add_argument("path", help="the file that arrived (local path or URL)")
    parser.add_argument("--source", help="the mapping that reads it (default: its folder's name)")
    parser.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        result = retrain(args.path, args.source, args.params)
    except FailedRun as err:
        print(f"retrain: {err}", file=sys.stderr)
        return 1
    print(result["status"], result.get("stored", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
