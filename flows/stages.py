"""The stages of `dvc.yaml` as Prefect tasks: one task per stage, each `dvc repro --single-item <verb>`.

DVC decides what is up to date, so the DAG is defined once, in `dvc.yaml`: one DVC status before the
stages (in this process: DVC is imported here already, a `dvc status` process would import it again), then a stage runs when DVC found it changed or when an upstream stage changed its entry in
`dvc.lock` during this run (whether it ran or was restored from DVC's run cache), and a run that changed
anything ends by checking that `dvc status` is clean. A stage that exits 2 (`pipelines._stage.USER_ERROR`:
the data or params are wrong) fails at once; any other failure (a crash, the DVC lock, a network error)
is retried with exponential backoff. Each dvc command runs under `flows/supervise.py`: a cancel or a
crash of the flow ends the stage's whole process group and checks the stage's outputs out again; on a
cancel, its uncached outputs (reports), which DVC deleted before running it, are put back from a copy.

What a run costs beyond the stages themselves (issue 16): the stage graph is read from DVC once per change of
`dvc.yaml` or `params.yaml` and kept in `.mapwise/stage-graph.json` (reading DVC's index parses dvc.lock, ~1 s),
and the status is asked of DVC in-process (a `dvc status` process spends ~0.5 s starting Python and DVC).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import dvc as dvc_package
import networkx as nx
import yaml
from dvc.exceptions import DvcException
from dvc.repo import Repo
from prefect import get_client, get_run_logger, task
from prefect.concurrency.sync import concurrency
from prefect.exceptions import FailedRun
from prefect.runtime import flow_run
from prefect.states import Failed, State
from prefect.tasks import exponential_backoff
from prefect.utilities.urls import url_for

from flows.supervise import run_supervised
from mapwise.atomic import write_json
from mapwise.errors import MapwiseError
from mapwise.overrides import restored_if_stopped
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


@dataclass(frozen=True)
class Graph:
    """What a run needs of `dvc.yaml`, read once: the stages in an order DVC can run them (the gate's upstream and the
    gate first, so that a new batch's decision does not wait for stages it does not need; ties in file order),
    each one's upstream stages and uncached outputs (reports, metrics, plots: DVC holds no copy), and every dep."""

    order: list[str]
    upstream: dict[str, set[str]]
    uncached: dict[str, list[Path]]
    deps: list[Path]

    def all_uncached(self) -> list[Path]:
        return [path for verb in self.order for path in self.uncached[verb]]


GRAPH_CACHE = Path(".mapwise/stage-graph.json")
_GRAPH_FORMAT = 2
GATE = "promote"  # the stage that decides on promotion: what it needs runs first


def _graph_key(root: Path) -> str:
    """What the graph is read from: dvc.yaml, the params it interpolates, and the DVC that reads them.

    `.dvc` files (tracked batches) add no stage with a command and no dependency, so they do not count.
    """
    digest = hashlib.sha256(f"{_GRAPH_FORMAT}:{dvc_package.__version__}".encode())
    for name in ("dvc.yaml", "params.yaml"):
        path = root / name
        digest.update(name.encode() + (path.read_bytes() if path.exists() else b"-"))
    return digest.hexdigest()


def stage_graph(root: Path) -> Graph:
    """The pipeline of `dvc.yaml` as DVC reads it; read once per change of dvc.yaml or params.yaml."""
    cache, key = root / GRAPH_CACHE, _graph_key(root)
    try:
        saved = json.loads(cache.read_text())
        if saved.get("key") == key:
            g = saved["graph"]
            return Graph(order=g["order"], upstream={k: set(v) for k, v in g["upstream"].items()},
                         uncached={k: [Path(p) for p in v] for k, v in g["uncached"].items()},
                         deps=[Path(p) for p in g["deps"]])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # none yet, or unreadable: read it from DVC
    graph = _read_graph(root)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_json(cache, {"key": key, "graph": {
            "order": graph.order, "upstream": {k: sorted(v) for k, v in graph.upstream.items()},
            "uncached": {k: [str(p) for p in v] for k, v in graph.uncached.items()}, "deps": [str(p) for p in graph.deps]}})
    except OSError:
        pass  # a read-only checkout: read it each time
    return graph


def _read_graph(root: Path) -> Graph:
    repo = Repo(str(root))
    try:
        graph = repo.index.graph  # edges run from a stage to what it depends on
        rank = {stage: i for i, stage in enumerate(repo.index.stages)}
        gate = next((s for s in repo.index.stages if s.addressing == GATE), None)
        needed = {gate, *nx.descendants(graph, gate)} if gate is not None else set()

        def key(stage) -> tuple[bool, int]:  # what the gate needs first: a new batch gets its decision sooner
            return stage not in needed, rank[stage]

        ordered = [s for s in nx.lexicographical_topological_sort(graph.reverse(), key=key) if s.cmd]
        return Graph(
            order=[s.addressing for s in ordered],
            upstream={s.addressing: {u.addressing for u in nx.descendants(graph, s) if u.cmd} for s in ordered},
            uncached={s.addressing: sorted({Path(o.fs_path) for o in s.outs if not o.use_cache}) for s in ordered},
            deps=sorted({Path(d.fs_path) for s in repo.index.stages for d in s.deps}),
        )
    finally:
        repo.close()


UP_TO_DATE, RAN, RESTORED = "up to date", "ran", "restored from the run cache"


@dataclass(frozen=True)
class StageRun:
    stage: str
    outcome: str  # UP_TO_DATE, RAN or RESTORED
    changed: bool  # its entry in dvc.lock changed: what reads its outputs must be brought up to date
    seconds: float

    @property
    def ran(self) -> bool:
        return self.outcome != UP_TO_DATE

    def as_dict(self) -> dict:
        return {"stage": self.stage, "outcome": self.outcome, "ran": self.ran, "changed": self.changed,
                "seconds": self.seconds}


def lock_entry(root: Path, verb: str) -> dict | None:
    """The stage's entry in dvc.lock: what DVC recorded of its last run (None before one)."""
    try:
        return (yaml.safe_load((root / "dvc.lock").read_text()) or {}).get("stages", {}).get(verb)
    except FileNotFoundError:
        return None


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


def dvc_status(verb: str, root: str) -> dict:
    """DVC's status of the repository (what `dvc status --json` prints), asked in this process; StageFailed if DVC fails."""
    try:
        repo = Repo(root)
        try:
            return repo.status()
        finally:
            repo.close()
    except DvcException as err:
        raise StageFailed(verb, f"dvc status: {err}", None) from None


def _transient(task, task_run, state) -> bool:
    """Retry unless the stage said its input is wrong."""
    return not getattr(state.data, "permanent", False)


def dvc(verb: str, args: list[str], root: str, restore: list[str] | None = None):
    """Run a dvc command for `verb`; what it printed, or StageFailed naming why it failed.

    `restore`: the dvc arguments that put the workspace back if the command is stopped half-way.
    """
    done = run_supervised(["dvc", *args], cwd=root, env=_stage_env(), restore=restore and ["dvc", *restore])
    if done.returncode != 0:
        output = done.stdout + done.stderr
        print(_DVC_HINTS.sub("", output).strip())
        code = _EXIT.search(output)
        raise StageFailed(verb, _reason(verb, output), int(code.group(1)) if code else None)
    return done


@task(retry_condition_fn=_transient, log_prints=True)
def changed_stages(root: str) -> set[str]:
    """The stages `dvc status` finds changed: their code, data, params or outputs differ from dvc.lock."""
    status = dvc_status("status", root)
    print(f"changed since dvc.lock: {', '.join(sorted(status)) or 'nothing'}")
    return set(status)


@task(retry_condition_fn=_transient, log_prints=True)
def run_stage(verb: str, root: str, up_to_date: bool = False, uncached: list[Path] | None = None) -> StageRun:
    """`dvc repro --single-item <verb>`: runs the stage if DVC finds it changed, else skips it.

    `up_to_date`: `dvc status` found neither the stage nor anything upstream changed, so no DVC call is needed.
    `uncached`: the stage's uncached outputs, put back if the stage is stopped (`Graph.uncached`).
    """
    if up_to_date:
        print(f"Stage '{verb}' is up to date (dvc status)")
        return StageRun(verb, UP_TO_DATE, False, 0.0)
    start, before = time.perf_counter(), lock_entry(Path(root), verb)
    with restored_if_stopped(uncached or [], Path(root) / ".mapwise" / "stage-outputs"):
        done = dvc(verb, ["repro", "--single-item", verb], root, restore=["checkout", "--force", "--quiet", verb])
    output = done.stdout + done.stderr
    print(_DVC_HINTS.sub("", output).strip())
    changed = lock_entry(Path(root), verb) != before
    outcome = RESTORED if f"Stage '{verb}' is cached" in output else RAN if f"Running stage '{verb}'" in output else UP_TO_DATE
    return StageRun(verb, outcome, changed, round(time.perf_counter() - start, 2))


@task(log_prints=True)
def verify(root: str, stages: list[str]) -> None:
    """After a run that changed something: `dvc status` must find every stage up to date."""
    status = dvc_status("verify", root)
    stale = sorted(set(status) & set(stages))
    if stale:
        raise StageFailed("verify", f"after the run, dvc status still finds {', '.join(stale)} changed "
                          "(was the workspace edited during the run?); run the pipeline again", USER_ERROR)
    others = sorted(set(status) - set(stages))
    print("dvc status: every stage is up to date" + (f" (changed outside the pipeline: {', '.join(others)})" if others else ""))


def checkout(root: Path) -> None:
    """`dvc checkout --force`: the cached outputs as dvc.lock names them (after an override run put it back)."""
    dvc("checkout", ["checkout", "--force", "--quiet"], str(root))


def with_retries(task_fn, name: str, p: OrchestrateParams):
    """A task named `name` with the retry policy from params (transient failures only)."""
    return task_fn.with_options(name=name, task_run_name=name, retries=p.retries,
                                retry_delay_seconds=exponential_backoff(backoff_factor=p.retry_delay_seconds))


def run_all(root: Path, p: OrchestrateParams, graph: Graph) -> list[StageRun]:
    """Every stage in order, as one task each; DVC is asked only about stages that may have changed."""
    changed = with_retries(changed_stages, "status", p)(str(root))
    runs: list[StageRun] = []
    for verb in graph.order:
        fresh = verb in changed or any(r.changed for r in runs if r.stage in graph.upstream[verb])
        runs.append(with_retries(run_stage, verb, p)(verb, str(root), up_to_date=not fresh, uncached=graph.uncached[verb]))
    if any(r.ran for r in runs):
        verify.with_options(name="verify", task_run_name="verify")(str(root), graph.order)
    return runs


def repo_limit(root: Path) -> str:
    """The name of the concurrency limit that lets one run at a time use this repository."""
    path = str(root.resolve())
    return f"mapwise-repo-{re.sub(r'[^a-zA-Z0-9_-]', '-', Path(path).name)}-{hashlib.sha256(path.encode()).hexdigest()[:8]}"


class _OneLine(logging.Filter):
    """No traceback for a failure already said in one line: ours keep their message, and Prefect's re-raise of
    the Failed state a flow returned (`FailedRun`: "Engine execution exited with unexpected exception") is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, (MapwiseError, StageFailed)):
            record.exc_info, record.exc_text = None, None
        return not isinstance(error, FailedRun)


def failed_on_error(body: Callable[[], T]) -> T | State:
    """Run a flow's body; a user error or failed stage ends the run Failed with its one-line message, no traceback."""
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _OneLine) for f in logger.filters):
            logger.addFilter(_OneLine())
    try:
        return body()
    except (MapwiseError, StageFailed) as err:
        get_run_logger().error(f"Failed: {err}")
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
