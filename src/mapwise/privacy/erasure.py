"""A forget request carried out now: logged, scrubbed from every output that holds customer rows, and the
registered models that were trained on the customer marked for retraining.

The raw inputs are never modified (they are the source of record); ingest leaves logged customers out
from then on, so the next pipeline run rebuilds every table and retrains every model without them.
"""

from __future__ import annotations

from pathlib import Path

from mapwise.params import Params
from mapwise.privacy.forget import append_requests, mentions, scrub
from mapwise.privacy.pseudonym import legacy_pseudonyms, load_key, normalise_id, pseudonyms
from mapwise.bundles.registry import RETRAIN_TAG, client


def customer_outputs(params: Params) -> list[Path]:
    """Every place mapwise writes customer-level rows: canonical tables, profiles, splits, audiences, model bundles,
    the registry's local artifacts and the service's download cache."""
    paths = [params.ingest.canonical_dir, params.profile.out.parent, params.split.out_dir, params.score.out.parent,
             params.target.out.parent, params.export.out_dir, params.serve.cache_dir, Path("mlartifacts")]
    paths += [x.out_dir for x in (params.propensity, params.uplift) if x is not None]
    if params.synth is not None:
        paths.append(params.synth.out.parent)
    return sorted({p for p in paths if p.exists()}, key=str)


def marked_versions(params: Params, ids: set[str], request_ids: list[str]) -> list[dict]:
    """Tag every registered version whose logged files hold one of `ids` (local artifact store) with RETRAIN_TAG.

    Versions stored elsewhere (a remote artifact store) cannot be read cheaply here: all of them are tagged.
    """
    from mlflow.exceptions import MlflowException

    local = Path("mlartifacts").is_dir()  # the embedded default store (mapwise.tracking.artifact_location)
    holding = mentions([Path("mlartifacts")], ids) if local else {}
    model_ids = {part for file in holding for part in Path(file).parts if part.startswith("m-")}
    c = client(params.tracking)
    try:
        found = [v for m in c.search_registered_models() for v in c.search_model_versions(f"name='{m.name}'")]
    except MlflowException:
        return []
    marked = []
    for v in found:
        logged = v.model_id or str(v.source or "").removeprefix("models:/")  # search leaves model_id empty
        if not local or logged in model_ids:
            previous = (v.tags or {}).get(RETRAIN_TAG)
            c.set_model_version_tag(v.name, v.version, RETRAIN_TAG, ",".join(filter(None, [previous, *request_ids])))
            marked.append({"model": v.name, "version": str(v.version)})
    return marked


def pseudonyms_of(params: Params, raw_ids: list[str]) -> list[str]:
    """The pseudonyms of raw customer ids (as written in the sources), with the ingestion key; never stored.

    An id that normalisation changes (`normalise_id`) also gives the pseudonym it had before ids were normalised,
    so outputs made under that rule are scrubbed too, and the log holds both."""
    key = load_key(params.ingest.key_file, create=False)
    given = [r for r in raw_ids if normalise_id(r)]
    return list(dict.fromkeys([*pseudonyms(given, key), *legacy_pseudonyms(given, key)]))


def forget_customers(params: Params, ids: list[str], origin: str) -> dict:
    """Log the requests for these pseudonyms, mark the model versions trained on them, scrub every output.

    Returns what was done: requests added, ones already logged, files changed (rows removed), versions marked.
    """
    added, repeated = append_requests(params.privacy.forget_log, ids, origin)
    everyone = set(ids)
    marked = marked_versions(params, everyone, [r.request_id for r in added])
    scrubbed = scrub(customer_outputs(params), everyone)
    return {"requests": [r.request_id for r in added], "already_forgotten": len(repeated), "files": scrubbed,
            "model_versions_marked": marked}
