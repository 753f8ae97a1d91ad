"""The Prefect flows on a real Prefect server (test harness), real DVC in a temp git repo, MLflow on temp SQLite.

One tiny repository for the module; the tests run in file order and build on each other's state.
"""

from __future__ import annotations

import asyncio
import gzip
import importlib.util
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml
import zc.lockfile
from conftest import REPO, dvc_project, shop_csv, stage_env
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    DeploymentFilter,
    DeploymentFilterName,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.exceptions import PrefectHTTPStatusError
from prefect.runner import Runner
from prefect.states import Cancelling
from typer.testing import CliRunner

from flows.cli import app
from flows.pipeline import pipeline
from flows.retrain import retrain
from flows.stages import GRAPH_CACHE, _read_graph, repo_limit, run_stage, stage_graph
from mapwise.bundles.format import bundle_digest
from mapwise.sources.ledger import Ledger
from mapwise.params import load_params
from mapwise.bundles.registry import CHAMPION, alias_version, client, versions

MODEL = "mapwise-recommender"
STAGES = ["ingest", "split", "train", "evaluate", "export", "propensity", "uplift", "register", "promote",  # the gate's first
          "profile", "synth", "target"]


@pytest.fixture(scope="module")
def repo(prefect_api, tmp_path_factory):
    """A git + DVC repo of the tiny project as the working directory, after one pipeline flow run."""
    # no baselines: the GRU barely trained is what serves, so the retrain flow has a network to warm start from
    root = dvc_project(tmp_path_factory.mktemp("flows") / "repo", baselines=[], models=["gru"], max_epochs=1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(root.parent / "home"))  # the default DVC remote, ~/.local/share/mapwise/dvc-remote, and no git identity
        mp.chdir(root)
        mp.setenv("MAPWISE_HMAC_KEY", "a-test-key-of-some-length")
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        state = pipeline(return_state=True)
        yield root, state


def _tracking():
    return load_params(Path("params.yaml")).tracking


def _flow_run(state):
    with get_client(sync_client=True) as c:
        return c.read_flow_run(state.state_details.flow_run_id)


def _task_runs(flow_run_id, timeout: float = 60) -> dict[str, object]:
    """A finished flow run's task runs by name, once the server has recorded them all as final.

    The server records task runs from events, a moment after the flow has returned: read until two reads agree
    and every run is final.
    """
    flow_filter = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    deadline, last = time.monotonic() + timeout, None
    with get_client(sync_client=True) as c:
        while True:
            runs = {r.name: r for r in c.read_task_runs(flow_run_filter=flow_filter)}
            seen = {name: (r.state_type, r.run_count, r.end_time) for name, r in runs.items()}
            final = all(r.state is not None and r.state.is_final() and r.end_time is not None for r in runs.values())
            if (final and seen == last) or time.monotonic() > deadline:
                return runs
            last = seen
            time.sleep(0.5)


def test_notify_and_watch_say_what_is_wrong_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    runner = CliRunner()
    missing = runner.invoke(app, ["notify", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 1 and missing.output == f"mapwise: {tmp_path / 'nope.csv'}: no such file\n"
    stray = shop_csv(tmp_path / "misc" / "x.csv")
    wrong = runner.invoke(app, ["notify", str(stray)])
    assert wrong.exit_code == 1 and "'misc' is not a source (online_retail, hillstrom, bank_marketing, online_shoppers); pass --source" in wrong.output
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    down = runner.invoke(app, ["notify", str(stray), "--source", "hillstrom"])
    assert down.exit_code == 1 and "no Prefect server answers at http://127.0.0.1:9/api; start one with `make up`" in down.output
    assert runner.invoke(app, ["watch", str(tmp_path)]).exit_code == 1


def test_stage_order_and_upstream_come_from_dvc(repo):
    graph = stage_graph(Path.cwd())
    order, upstream = graph.order, graph.upstream
    assert order == STAGES
    assert upstream["ingest"] == set() and upstream["profile"] == {"ingest"}
    assert upstream["promote"] == {"ingest", "split", "train", "evaluate", "export", "propensity", "uplift", "register"}
    assert upstream["target"] == {"ingest", "profile", "uplift"}
    assert Path.cwd() / "reports/train.json" in graph.uncached["train"] and graph.uncached["split"] != []
    # read from DVC once per change of dvc.yaml or params.yaml, then from .mapwise/stage-graph.json
    cache = Path.cwd() / GRAPH_CACHE
    assert cache.exists() and stage_graph(Path.cwd()) == graph == _read_graph(Path.cwd())
    key = json.loads(cache.read_text())["key"]
    params = Path("params.yaml").read_text()
    try:
        Path("params.yaml").write_text(params + "# a comment\n")
        assert stage_graph(Path.cwd()) == graph and json.loads(cache.read_text())["key"] != key
    finally:
        Path("params.yaml").write_text(params)


def _dvc_status() -> str:
    done = subprocess.run(["dvc", "status"], capture_output=True, text=True, env=stage_env())
    return done.stdout + done.stderr


def _git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def test_pipeline_flow_runs_each_stage_as_a_task_and_leaves_artifacts_and_lineage(repo):
    _, state = repo
    assert state.is_completed(), state.message
    result = state.result()
    assert [s["stage"] for s in result["stages"]] == STAGES and all(s["outcome"] == "ran" for s in result["stages"])
    assert (result["decision"]["action"], result["decision"]["champion_after"]) == ("promote", "1")
    assert "Data and pipelines are up to date" in _dvc_status()
    flow_run_id = str(state.state_details.flow_run_id)
    tasks = _task_runs(flow_run_id)
    assert set(tasks) == {"status", *STAGES, "verify", "record", "push"} and all(t.state.is_completed() for t in tasks.values())
    with get_client(sync_client=True) as c:
        artifacts = c.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    by_key = {a.key: a for a in artifacts}
    assert set(by_key) == {"stages", "evaluation", "targeting", "gate-decision", "reproduce"}
    recorded = result["recorded"]
    assert recorded["ref"].startswith("refs/exps/") and recorded["commit"] in by_key["reproduce"].data
    assert _git("rev-parse", recorded["ref"]).strip() == recorded["commit"]
    assert _git("show", f"{recorded['commit']}:dvc.lock") == Path("dvc.lock").read_text(), "the commit holds this run's lock"
    assert client(_tracking()).get_model_version(MODEL, "1").tags["git_commit"] == recorded["commit"]
    evaluation = json.loads(by_key["evaluation"].data)
    assert {row["recommender"] for row in evaluation} == {"gru"}
    targeting = json.loads(by_key["targeting"].data)  # the tiny shop: only its next-purchase task has data
    assert {(row["task"], row["model"]) for row in targeting if row["metric"] == "test ROC AUC"} == {
        ("shop", "neural"), ("shop", "logistic"), ("shop", "gradient_boosting")}
    gate = by_key["gate-decision"].data
    assert "| mapwise-propensity-shop | promote | 1 | no champion yet |" in gate
    assert "# Gate: promote version 1" in gate and f"/#/models/{MODEL}/versions/1" in gate
    assert result["decision"]["run_id"] in gate
    assert f"/runs/{client(_tracking()).get_model_version(MODEL, '1').run_id})" in gate, "a link to the version's run"
    # lineage the other way: MLflow knows the flow run
    mlflow = client(_tracking())
    train_run = mlflow.get_run(json.loads(Path("reports/train.json").read_text())["gru"]["run_id"])
    assert train_run.data.tags["prefect.flow_run_id"] == flow_run_id
    assert mlflow.get_run(result["decision"]["run_id"]).data.tags["prefect.flow_run_id"] == flow_run_id
    assert mlflow.get_model_version(MODEL, "1").tags["prefect.flow_run_id"] == flow_run_id
    assert f"runs/flow-run/{flow_run_id}" in train_run.data.tags["prefect.flow_run_url"]


def test_an_override_run_is_recorded_as_an_experiment_and_the_workspace_comes_back(repo, tmp_path):
    before = {name: Path(name).read_bytes() for name in ("params.yaml", "dvc.lock", "reports/train.json")}
    trained = bundle_digest(Path("models/export/gru"))
    lr = load_params(Path("params.yaml")).train.lr * 2
    state = pipeline(overrides={"train.lr": lr}, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert not result["stages"][0]["ran"] and {s["stage"] for s in result["stages"] if s["ran"]} >= {"train", "register"}
    assert {name: Path(name).read_bytes() for name in before} == before, "params, lock and reports as before the run"
    assert bundle_digest(Path("models/export/gru")) == trained, "and the cached outputs too"
    assert "Data and pipelines are up to date" in _dvc_status()
    assert not Path(".mapwise/params.before-overrides").exists()
    commit = result["recorded"]["commit"]
    lock = yaml.safe_load(_git("show", f"{commit}:dvc.lock"))
    assert lock["stages"]["train"]["params"]["params.yaml"]["train"]["lr"] == lr
    assert yaml.safe_load(_git("show", f"{commit}:params.yaml"))["train"]["lr"] == lr, "params and lock agree"
    version = client(_tracking()).get_model_version(MODEL, json.loads(_git("show", f"{commit}:reports/register.json"))["version"])
    assert version.tags["git_commit"] == commit and version.tags["git_ref"] == result["recorded"]["ref"]
    # another clone, through the default remote, reproduces the registered files exactly
    clone = tmp_path / "clone"
    _git("clone", "-q", str(Path.cwd()), str(clone))
    _git("fetch", "-q", "origin", f"{version.tags['git_ref']}", cwd=clone)
    _git("-c", "advice.detachedHead=false", "checkout", "-q", version.tags["git_commit"], cwd=clone)
    for cmd in (["dvc", "pull", "-q"], ["dvc", "repro"]):
        done = subprocess.run(cmd, cwd=clone, capture_output=True, text=True, env=stage_env())
        assert done.returncode == 0, done.stdout + done.stderr
    assert "Data and pipelines are up to date" in done.stdout, done.stdout
    assert bundle_digest(clone / "models/export/gru") == version.tags["bundle_digest"]


def test_a_stage_restored_from_the_run_cache_brings_what_follows_up_to_date(repo):
    """params.yaml edited, a run, edited back: DVC restores train from its run cache; what reads it must follow."""
    params = Path("params.yaml")
    data = yaml.safe_load(params.read_text())
    data["train"]["lr"] = data["train"]["lr"] * 2  # as the override run before: DVC's run cache holds that training
    params.write_text(yaml.safe_dump(data, sort_keys=False))
    state = pipeline(return_state=True)
    assert state.is_completed(), state.message
    outcomes = {s["stage"]: s["outcome"] for s in state.result()["stages"]}
    assert outcomes["train"] == "restored from the run cache" and outcomes["ingest"] == "up to date"
    assert all(outcomes[s] != "up to date" for s in ("evaluate", "export", "register")), outcomes
    assert "Data and pipelines are up to date" in _dvc_status()


def test_a_wrong_override_fails_the_run_before_any_stage(repo):
    before = Path("params.yaml").read_bytes()
    state = pipeline(overrides={"train.max_epochz": 2}, return_state=True)
    assert state.is_failed() and state.message == "overrides: train.max_epochz: unknown key (did you mean 'max_epochs'?)"
    assert _task_runs(state.state_details.flow_run_id) == {}
    assert Path("params.yaml").read_bytes() == before


def test_a_failing_stage_fails_the_flow_with_its_message_and_is_not_retried(repo):
    state = pipeline(overrides={"register.candidate": "sasrec"}, return_state=True)
    assert state.is_failed()
    assert state.message == "register: register.candidate: 'sasrec' is not in train.models ['gru']"
    tasks = _task_runs(state.state_details.flow_run_id)
    assert tasks["register"].run_count == 1 and "promote" not in tasks, "a user error is not retried, and stops the run"


def test_a_transient_failure_is_retried(repo):
    """The DVC repository lock held by another process: the stage fails, waits, and succeeds on retry."""
    lock = zc.lockfile.LockFile(str(Path(".dvc/tmp/lock")))
    name = f"split-{time.time_ns()}"

    def release_when_retrying():
        with get_client(sync_client=True) as c:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if any(r.name == name and r.state_name == "AwaitingRetry" for r in c.read_task_runs(limit=50)):
                    break
                time.sleep(0.2)
        lock.close()

    releaser = threading.Thread(target=release_when_retrying)
    releaser.start()
    state = run_stage.with_options(name=name, task_run_name=name, retries=2, retry_delay_seconds=1)(
        "split", str(Path.cwd()), return_state=True)
    releaser.join()
    assert state.is_completed(), state.message
    with get_client(sync_client=True) as c:
        assert c.read_task_run(state.state_details.task_run_id).run_count == 2


def test_two_runs_at_once_queue_instead_of_colliding_on_the_dvc_lock(repo):
    states = []
    threads = [threading.Thread(target=lambda: states.append(pipeline(return_state=True))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(s.is_completed() for s in states), [s.message for s in states]
    spans = []
    for state in states:
        tasks = _task_runs(state.state_details.flow_run_id).values()
        assert all(t.run_count == 1 for t in tasks), "a stage was retried: the runs met on the DVC lock instead of queueing"
        spans.append((min(t.start_time for t in tasks), max(t.end_time for t in tasks)))
    first, second = sorted(spans)
    assert first[1] <= second[0], "the second run's stages started after the first run's had all finished"
    with get_client(sync_client=True) as c:
        assert c.read_global_concurrency_limit_by_name(repo_limit(Path.cwd())).limit == 1


def _serve_deployments() -> Runner:
    """The real deployments of deploy/serve_flows.py, served from a thread as `make up` serves them from a process."""
    spec = importlib.util.spec_from_file_location("serve_flows", REPO / "deploy" / "serve_flows.py")
    serve_flows = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(serve_flows)
    runner = Runner(name="test-runner", query_seconds=1)
    for deployment in serve_flows.deployments(load_params(Path("params.yaml"))):
        runner.add_deployment(deployment)
    threading.Thread(target=lambda: asyncio.run(runner.start()), daemon=True).start()
    return runner


def _wait_for_run(deployment: str, timeout: float = 600):
    """The first flow run of a deployment, once it has finished."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as c:
        while time.monotonic() < deadline:
            runs = c.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment])))
            if runs and runs[0].state.is_final():
                return runs[0]
            time.sleep(1)
    raise AssertionError(f"no finished run of {deployment} within {timeout} s")


def test_a_dropped_file_becomes_an_event_a_retrain_and_a_gate_decision(repo):
    runner = _serve_deployments()
    versions_before = len(versions(_tracking(), MODEL))
    dropped = shop_csv(Path("data/incoming/shop/week-13.csv"), customers=30, seed=1)
    watched = CliRunner().invoke(app, ["watch", "--once"])
    assert watched.exit_code == 0, watched.output
    assert f"{dropped.resolve()}: announced (shop)" in watched.output
    run = _wait_for_run("on-arrival")
    runner.stop()
    with get_client(sync_client=True) as c:
        scheduled = c.read_deployment_by_name("pipeline/scheduled")
    assert scheduled.schedules[0].schedule.cron == load_params(Path("params.yaml")).orchestrate.schedule
    assert run.state.is_completed(), run.state.message
    assert run.parameters["path"] == str(dropped.resolve())
    assert len(versions(_tracking(), MODEL)) == versions_before + 1, "a new model version was registered"
    decision = json.loads(Path("reports/promote.json").read_text())
    assert decision["challenger"] == str(versions_before + 1) and decision["action"] in ("promote", "refuse")
    assert client(_tracking()).get_model_version(MODEL, decision["challenger"]).tags["gate.decision"] == decision["action"]
    trained = json.loads(Path("reports/train.json").read_text())  # warm start: the champion's architecture, fine-tuned
    (model,) = trained
    assert trained[model]["init_from"] == f"models:/{MODEL}/{decision['champion_before']}", trained[model]["warm_start"]
    assert "train" in _dvc_status(), "params.yaml came back: the scheduled run retrains every model from scratch"
    entry = Ledger(Path("data/ledger.jsonl")).entries()[-1]
    assert entry["status"] == "accepted" and entry["flow_run_id"] == str(run.id)
    stored = Path(entry["stored"])
    assert stored.read_bytes() == dropped.read_bytes() and Path(f"{stored}.dvc").exists()
    # the run is recorded with the batch's .dvc file and the ledger beside the lock it produced
    ref = next(line.split()[1] for line in _git("for-each-ref", "--format=%(objectname) %(refname)", "refs/exps").splitlines()
               if line.endswith(f"/retrain-{run.name}-{str(run.id)[:6]}"))
    assert _git("show", f"{ref}:{stored}.dvc") == Path(f"{stored}.dvc").read_text()
    assert entry["sha256"] in _git("show", f"{ref}:data/ledger.jsonl") and _git("show", f"{ref}:dvc.lock") == Path("dvc.lock").read_text()
    assert client(_tracking()).get_model_version(MODEL, decision["challenger"]).tags["git_ref"] == ref


def test_the_same_content_twice_is_processed_once(repo):
    again = Path("data/incoming/shop/week-13-resent.csv")
    shutil.copy("data/incoming/shop/week-13.csv", again)
    lock_before = Path("dvc.lock").read_text()
    state = retrain(str(again), return_state=True)
    assert state.is_completed()
    result = state.result()
    assert result["status"] == "duplicate" and result["of"]["status"] == "accepted"
    assert Path("dvc.lock").read_text() == lock_before and len(list(Path("data/batches/shop").glob("*.csv"))) == 1


def test_a_malformed_batch_is_rejected_and_changes_nothing(repo):
    champion = alias_version(client(_tracking()), MODEL, CHAMPION)
    lock_before = Path("dvc.lock").read_text()
    bad = Path("data/incoming/shop/garbled.csv")
    bad.write_text("customer_id,item_id,timestamp\nc1,i1,yesterday\nc2,i2,2024-01-05 10:00:00\n")
    state = retrain(str(bad), return_state=True)
    assert state.is_failed()
    assert state.message.startswith(f"{bad}: rejected, nothing applied: 1 of 2 rows for events fail the contract")
    assert "kept in data/rejected/shop/" in state.message
    kept = next(Path("data/rejected/shop").glob("*-garbled.csv"))
    assert json.loads(Path(f"{kept}.reason.json").read_text())["origin"] == str(bad)
    assert not list(Path("data/batches/shop").glob("*garbled*")) and Path("dvc.lock").read_text() == lock_before
    assert alias_version(client(_tracking()), MODEL, CHAMPION) == champion
    assert retrain(str(bad), return_state=True).result()["status"] == "duplicate", "a rejected batch is not checked twice"


def test_hostile_batches_are_rejected_in_one_line_recorded_and_leave_nothing_staged(repo, tmp_path):
    small = yaml.safe_load(Path("params.yaml").read_text())
    small["ingest"]["max_file_mb"] = 1
    Path("params-small.yaml").write_text(yaml.safe_dump(small))
    header = "customer_id,item_id,timestamp\n"
    rows = "".join(f"c{n},i{n % 5},2024-02-0{n % 9 + 1} 10:00:00\n" for n in range(300))
    incoming = Path("data/incoming/shop")
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0:secret-first-line\n")
    (incoming / "linked.csv").symlink_to(secret)
    cases = {
        "bomb.csv.gz": (gzip.compress(header.encode() + b"0" * (64 * 2**20)), "over the limit of 1 MiB"),
        "stray.csv": ((header + rows).replace("c150,", '"c150,').encode(), "damaged: 1 of 300 records cannot be parsed"),
        "future.csv": ((header + rows.replace("2024-02-01", "2099-02-01")).encode(), "later than the time of ingestion"),
        "empty.csv": (b"", "the file is empty (0 bytes)"),
        "linked.csv": (None, "it resolves to a file outside"),
    }
    for name, (content, reason) in cases.items():
        if content is not None:
            (incoming / name).write_bytes(content)
        state = retrain(str(incoming / name), params_file="params-small.yaml", return_state=True)
        assert state.is_failed() and reason in state.message and "\n" not in state.message, state.message
        assert "secret" not in state.message and len(state.message) < 1200
        assert not list(Path(".mapwise/staging").iterdir()), "no staged copy left behind"
    ledger = {Path(e["origin"]).name: e for e in Ledger(Path("data/ledger.jsonl")).entries()}
    assert all(ledger[name]["status"] == "rejected" for name in cases if name != "linked.csv")
    assert all(len(json.dumps(e)) < 2000 for e in ledger.values())


def _until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout} s: {what}")


def _finished(run_id):
    with get_client(sync_client=True) as c:
        run = c.read_flow_run(run_id)
    return run if run.state.is_final() else None


def _training() -> list[psutil.Process]:
    """The training processes running in this repository (DVC's child `python -m pipelines.train`)."""
    here = str(Path.cwd())
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd", "status"]):
        if "pipelines.train" in (proc.info["cmdline"] or []) and proc.info["cwd"] == here and proc.info["status"] != "zombie":
            found.append(proc)
    return found


def test_from_the_ui_a_typed_form_one_line_failures_and_a_cancel_that_stops_the_training(repo):
    runner = _serve_deployments()
    try:
        with get_client(sync_client=True) as c:
            manual = c.read_deployment_by_name("pipeline/manual")
            form = manual.parameter_openapi_schema
            train = form["definitions"]["TrainParamsOverrides"]["properties"]["max_epochs"]
            assert (train["type"], train["minimum"]) == ("integer", 1) and "default" not in train, "a plain bounded input"
            assert "patience" in form["definitions"]["TrainParamsOverrides"]["properties"]
            with pytest.raises(PrefectHTTPStatusError, match="'max_epochz' was unexpected"):
                c.create_flow_run_from_deployment(manual.id, parameters={"overrides": {"train": {"max_epochz": 2}}})
            bad = c.create_flow_run_from_deployment(manual.id, parameters={"overrides": {"register": {"candidate": "sasrec"}}})
        failed = _until(lambda: _finished(bad.id), 300, "the run with a failing stage ends")
        reason = "register: register.candidate: 'sasrec' is not in train.models ['gru']"
        assert failed.state.is_failed() and failed.state.message == reason

        def run_logs() -> list:
            with get_client(sync_client=True) as c:
                return c.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[bad.id])))

        # the run's logs reach the API after its final state: wait for the flow's own last line (not a task's)
        found = _until(lambda: (got := run_logs()) and any(
            log.task_run_id is None and log.message.startswith("Finished in state") for log in got) and got, 60,
            "the failed run's last log line arrives")
        logs = [log.message for log in found]
        assert f"Failed: {reason}" in logs, logs
        assert not [m for m in logs if "Traceback" in m or "unexpected exception" in m], logs

        before = {name: Path(name).read_bytes() for name in ("params.yaml", "dvc.lock")}
        status = _stage_status()  # a warm-start retrain before leaves train and what follows changed in params
        trained = bundle_digest(Path("models/export/gru"))
        with get_client(sync_client=True) as c:
            long = c.create_flow_run_from_deployment(manual.id, parameters={
                "overrides": {"train": {"max_epochs": 100000, "patience": 100000, "lr": 0.0123}}})
        processes = _until(_training, 300, "the training starts")
        with get_client(sync_client=True) as c:
            c.set_flow_run_state(long.id, Cancelling())
        cancelled = _until(lambda: _finished(long.id), 120, "the cancelled run ends")
    finally:
        runner.stop()
    assert cancelled.state.is_cancelled(), cancelled.state
    assert not [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], "the training was stopped"
    assert not _training()
    assert {name: Path(name).read_bytes() for name in before} == before
    assert bundle_digest(Path("models/export/gru")) == trained and Path("models/trained").is_dir()
    assert _stage_status() == status, "the workspace as DVC left it"


def _stage_status() -> list[str]:
    """`dvc status` without its warnings (a killed stage's lock entry, removed)."""
    return [line for line in _dvc_status().splitlines() if line.strip() and not line.startswith("WARNING")]


def test_no_raw_id_or_pii_column_reaches_any_artifact(repo):
    """After the flow runs above (pipeline, overrides, retrains, rejected batches): no raw customer id, e-mail or
    e-mail column in any output, quarantine table, report, model, MLflow's store or Prefect's (artifacts, logs)."""
    import polars as pl
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    from conftest import PII_COLUMN
    from mapwise.privacy.scan import scan

    raw = [pl.read_csv(f) for f in [Path("raw/shop.csv"), *Path("data").rglob("*.csv")] if PII_COLUMN in f.read_text()[:200]]
    needles = sorted({v for frame in raw for col in ("customer_id", PII_COLUMN) for v in frame[col].to_list()})
    assert len(needles) > 100
    artifacts = [Path(p) for p in ("data/canonical", "data/quarantine", "data/profiles", "data/split", "data/audience",
                                   "models", "reports", "mlflow.db", "mlartifacts", ".mapwise")]
    prefect = Path(PREFECT_SERVER_DATABASE_CONNECTION_URL.value().split(":///", 1)[1])  # the test server's database
    assert prefect.is_file(), "Prefect's artifacts and logs are scanned"
    found = scan([p for p in artifacts if p.exists()] + [prefect.parent], needles, pii_columns=[PII_COLUMN])
    assert [(str(f.file), f.where) for f in found] == []
