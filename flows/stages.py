"""The stages of `dvc.yaml` as Prefect tasks: one task per stage, each `dvc repro --single-item <verb>`.

DVC still decides what is up to date, so the DAG is defined once, in `dvc.yaml`. A stage that exits 2
(`pipelines._stage.USER_ERROR`: the data or params are wrong) fails at once; any other failure (a
crash, the DVC lock, a network error) is retried with exponential backoff.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import networkx as nx
from dvc.repo import Repo
from prefect import get_client, get_run_logger, task
from prefect.concurrency.sync import concurrency
from prefect.runtime import flow_run
from prefect.states import Failed, State
from prefect.tasks import exponential_backoff
from prefect.utilities.urls import url_for

from mapwise.errors import MapwiseError
from mapwise.params import OrchestrateParams
from mapwise.tracking import FLOW_RUN_ENV, FLOW_RUN_URL_ENV
from pipelines._stage import USER_ERROR

T = TypeVar("T")
_EXIT = re.compile(r"exited with (-?\d+)")
_DVC_HINTS = re.compile(r"^(To track the changes with git.*?|To enable auto staging.*?|Use `dvc push`.*?)\n(\n?\s+(git add|dvc config).*\n)?\n?", re.MULTILINE)


class StageFailed(RuntimeError):
    """A stage that failed; `permanent` when retrying cannot help."""

    def __init__(self, verb: str, message: str, code: int | None):
        super().__init__(f"{verb}: {message}")
        self.permanent = code == USER_ERROR


def stage_graph(root: Path) -> tuple[list[str], dict[str, set[str]]]:
    """The pipeline stages of `dvc.yaml` in an order DVC can run them (ties in file order), and each one's upstream stages."""
    repo = Repo(str(root))
    try:
        graph = repo.index.graph  # edges run from a stage to what it depends on
        rank = {stage: i for i, stage in enumerate(repo.index.stages)}
        ordered = [s for s in nx.lexicographical_topological_sort(graph.reverse(), key=lambda s: rank[s]) if s.cmd]
        upstream = {s.addressing: {u.addressing for u in nx.descendants(graph, s) if u.cmd} for s in ordered}
        return [s.addressing for s in ordered], upstream
    finally:
        repo.close()


@dataclass(frozen=True)
class StageRun:
    stage: str
    ran: bool
    seconds: float


def _reason(verb: str, output: str) -> str:
    """The line that says why a stage failed: the stage's own one-line error, else DVC's last error line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    own = [line for line in lines if line.startswith(f"{verb}: ")]
    if own:
        return own[-1].removeprefix(f"{verb}: ")
    errors = [line for line in lines if line.startswith("ERROR")] or lines or ["no output"]
    return errors[-1]


def _stage_env() -> dict[str, str]:
    """The environment a stage runs in: this Python's tools first, and the flow run for MLflow lineage."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.setdefault("DVC_NO_ANALYTICS", "1")
    run_id = flow_run.get_id()
    url = url_for("flow-run", obj_id=run_id) if run_id else None  # the UI's route (runtime's ui_url differs)
    env.update({FLOW_RUN_ENV: run_id or "", FLOW_RUN_URL_ENV: url or ""})
    return env


def _transient(task, task_run, state) -> bool:
    """Retry unless the stage said its input is wrong."""
    return not getattr(state.data, "permanent", False)


def dvc(verb: str, args: list[str], root: str) -> subprocess.CompletedProcess:
    """Run a dvc command for `verb`; what it printed, or StageFailed naming why it failed."""
    done = subprocess.run(["dvc", *args], cwd=root, env=_stage_env(), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        output = done.stdout + done.stderr
        print(_DVC_HINTS.sub("", output).strip())
        code = _EXIT.search(output)
        raise StageFailed(verb, _reason(verb, output), int(code.group(1)) if code else None)
    return done


@task(retry_condition_fn=_transient, log_prints=True)
def changed_stages(root: str) -> set[str]:
    """The stages `dvc status` finds changed: their code, data, params or outputs differ from dvc.lock."""
    status = json.loads(dvc("status", ["status", "--json"], root).stdout.strip() or "{}")
    print(f"changed since dvc.lock: {', '.join(sorted(status)) or 'nothing'}")
    return set(status)


@task(retry_condition_fn=_transient, log_prints=True)
def run_stage(verb: str, root: str, up_to_date: bool = False) -> StageRun:
    """`dvc repro --single-item <verb>`: runs the stage if DVC finds it changed, else skips it.

    `up_to_date`: `dvc status` found neither the stage nor anything upstream changed, so no DVC call is needed.
    """
    if up_to_date:
        print(f"Stage '{verb}' is up to date (dvc status)")
        return StageRun(verb, False, 0.0)
    start = time.perf_counter()
    done = dvc(verb, ["repro", "--single-item", verb], root)
    output = done.stdout + done.stderr
    print(_DVC_HINTS.sub("", output).strip())
    return StageRun(verb, f"Running stage '{verb}'" in output, round(time.perf_counter() - start, 2))


def with_retries(task_fn, name: str, p: OrchestrateParams):
    """A task named `name` with the retry policy from params (transient failures only)."""
    return task_fn.with_options(name=name, task_run_name=name, retries=p.retries,
                                retry_delay_seconds=exponential_backoff(backoff_factor=p.retry_delay_seconds))


def run_all(root: Path, p: OrchestrateParams) -> list[StageRun]:
    """Every stage in order, as one task each; DVC is asked only about stages that may have changed."""
    order, upstream = stage_graph(root)
    changed = with_retries(changed_stages, "status", p)(str(root))
    runs: list[StageRun] = []
    for verb in order:
        fresh = verb in changed or any(r.ran for r in runs if r.stage in upstream[verb])
        runs.append(with_retries(run_stage, verb, p)(verb, str(root), up_to_date=not fresh))
    return runs


def repo_limit(root: Path) -> str:
    """The name of the concurrency limit that lets one run at a time use this repository."""
    path = str(root.resolve())
    return f"mapwise-repo-{re.sub(r'[^a-zA-Z0-9_-]', '-', Path(path).name)}-{hashlib.sha256(path.encode()).hexdigest()[:8]}"


def failed_on_error(body: Callable[[], T]) -> T | State:
    """Run a flow's body; a user error or failed stage ends the run Failed with its one-line message, no traceback."""
    try:
        return body()
    except (MapwiseError, StageFailed) as err:
        return Failed(message=str(err))


@contextmanager
def one_at_a_time(root: Path):
    """Hold the repository's slot (a Prefect global concurrency limit of 1): other runs queue here."""
    name = repo_limit(root)
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, 1)
    get_run_logger().info(f"taking the repository's slot ({name}); another run holding it is waited for")
    with concurrency(name, occupy=1, strict=True):
        yield
