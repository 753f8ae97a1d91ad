"""Record what a run made, so that every registered model version points at a commit that reproduces it.

`dvc exp save` commits the workspace as a DVC experiment (`refs/exps/...`): params as the run used them,
`dvc.lock`, the code the stages ran, accepted batches' `.dvc` files and the batch ledger, without moving
the branch or touching the workspace. `dvc push` puts the data and models that commit names on the default
remote. Then, in this clone or any other that fetches the ref (`dvc exp pull <git remote> <name>`),
`git checkout <commit> && dvc pull && dvc repro` is a no-op that gives back the registered files.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from prefect import get_run_logger, task

from flows.stages import Graph, dvc
from mapwise.params import Params
from mapwise.bundles.registry import record_reproduction

_IDENTITY = {"GIT_AUTHOR_NAME": "mapwise flows", "GIT_AUTHOR_EMAIL": "mapwise@localhost",
             "GIT_COMMITTER_NAME": "mapwise flows", "GIT_COMMITTER_EMAIL": "mapwise@localhost"}


@dataclass(frozen=True)
class Recorded:
    name: str
    ref: str
    commit: str


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)


def _inputs(root: Path, params: Params, graph: Graph) -> list[str]:
    """Untracked files a run read or made that git must hold for a clone to reproduce it: new code or mappings
    under the stages' deps, reports and other uncached outputs, accepted batches' `.dvc` files, the ledger, and
    the `.gitignore` files DVC writes beside outputs."""
    paths = {os.path.relpath(p, root) for p in [*graph.deps, *graph.all_uncached()]}
    paths |= {str(params.ingest.batches_dir), str(params.orchestrate.ledger)}
    inside = sorted(p for p in paths if not p.startswith(".."))
    listed = _git(root, "ls-files", "--others", "--exclude-standard", "-z", "--", *inside, ":(glob)**/.gitignore").stdout
    return [p for p in listed.split("\0") if p]


@task(name="record", task_run_name="record", log_prints=True)
def record_run(root: str, name: str, message: str, params: Params, graph: Graph) -> Recorded | None:
    """`dvc exp save` of the workspace as experiment `name`; None, with a warning, where git cannot hold it."""
    where = Path(root)
    if _git(where, "rev-parse", "--verify", "-q", "HEAD").returncode != 0:
        get_run_logger().warning("not recorded: the repository has no git commit yet, so no experiment can point at "
                                 "one; commit once (git add -A && git commit) and later runs are recorded")
        return None
    if not _git(where, "config", "user.email").stdout.strip():
        os.environ.update({k: v for k, v in _IDENTITY.items() if k not in os.environ})  # no identity configured here
    untracked = _inputs(where, params, graph)
    dvc("record", ["exp", "save", "-n", name, "-m", message, *(a for path in untracked for a in ("--include-untracked", path))],
        root)
    refs = _git(where, "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps").stdout.split("\n")
    commit, ref = next(line.split(" ") for line in refs if line.endswith(f"/{name}"))
    print(f"recorded as DVC experiment {name}: {ref} (commit {commit[:12]}); "
          f"reproduce: git checkout {commit[:12]} && dvc pull && dvc repro")
    return Recorded(name, ref, commit)


@task(name="push", task_run_name="push", log_prints=True)
def push(root: str) -> None:
    """`dvc push`: the data and models of this run to the default remote, for other clones to pull."""
    dvc("push", ["push", "-q"], root)
    print("pushed to the default DVC remote")


def point_versions_at(params: Params, recorded: Recorded, registered_now: bool) -> str | None:
    """Tag the model version this run registered with the commit that reproduces it; its number, if any."""
    report = params.register.report
    if not registered_now or not report.exists():
        return None
    entry = json.loads(report.read_text())
    if not entry.get("created"):
        return None
    record_reproduction(params.tracking, entry["model_name"], entry["version"], recorded.commit, recorded.ref)
    return entry["version"]
