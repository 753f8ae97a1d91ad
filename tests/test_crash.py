"""Crashes and a full disk: a process killed mid-write (SIGKILL) or out of space leaves the previous outputs whole.

Each kill is deterministic: the real stage runs in a subprocess with `tests/crashpoint` on its path, and its
`sitecustomize` kills it at the N-th file write (the file cut to half, as a write caught midway) or just
before the N-th rename or tree removal (see that module).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import REPO, dvc_project, run_stage, shop_csv, stage_env, tiny_events, tiny_project

from mapwise.atomic import recover_folder
from mapwise.bundles.format import load_bundle
from mapwise.sources.ingest import batch_files
from mapwise.sources.ledger import Ledger

KILLED = -signal.SIGKILL
KEY = "a-test-key-of-some-length"
TEMPORARY = (".tmp", ".new", ".old")


@pytest.fixture
def crash_at(monkeypatch):
    """Where subprocesses started from now on are killed (`write:N`, `step:N`, `dvc-...`; None: nowhere)."""
    monkeypatch.setenv("PYTHONPATH", str(REPO / "tests" / "crashpoint"))
    monkeypatch.setenv("MAPWISE_HMAC_KEY", KEY)

    def at(point: str | None) -> None:
        if point:
            monkeypatch.setenv("MAPWISE_CRASH_AT", point)
        else:
            monkeypatch.delenv("MAPWISE_CRASH_AT")

    return at


def _files(*paths: Path) -> dict[str, bytes]:
    """Every file under `paths`, by path, with its bytes."""
    found = {}
    for path in paths:
        for file in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
            found[str(file)] = file.read_bytes()
    return found


def _temporaries(root: Path) -> list[str]:
    return [str(p) for p in root.rglob(".*") if p.name.endswith(TEMPORARY) and not {".dvc", ".git"} & set(p.parts)]


# --- the folder swap, kill point by kill point ---------------------------------------------------------------

SWAP = """
import sys
from pathlib import Path
from mapwise.atomic import replacing_folder
with replacing_folder(Path("out")) as build:
    (build / "a.txt").write_text("new a")
    (build / "b.txt").write_text("new b")
"""


@pytest.mark.parametrize("at", ["write:1", "write:2", "step:1", "step:2", "step:3", "step:4"])
def test_a_folder_swap_killed_anywhere_leaves_the_old_folder_or_the_new_one_whole(tmp_path, crash_at, at):
    # steps: 1 drop a stale build, 2 folder -> .old, 3 build -> folder, 4 drop .old
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("old a")
    old, new = {"a.txt": b"old a"}, {"a.txt": b"new a", "b.txt": b"new b"}
    crash_at(at)
    done = subprocess.run([sys.executable, "-c", SWAP], cwd=tmp_path, env=stage_env(), capture_output=True)
    assert done.returncode == KILLED, done.stderr.decode()[-2000:]

    def contents():
        return {p.name: p.read_bytes() for p in out.iterdir()} if out.exists() else None

    if at == "step:3":  # between the two renames: no folder, the previous one kept aside
        assert contents() is None and (tmp_path / ".out.old" / "a.txt").read_bytes() == b"old a"
    else:
        assert contents() == (new if at == "step:4" else old)
    recover_folder(out)
    assert contents() == (new if at == "step:4" else old), "repaired: the old folder back, or the new one kept"
    assert _temporaries(tmp_path) == []
    crash_at(None)
    assert subprocess.run([sys.executable, "-c", SWAP], cwd=tmp_path, env=stage_env()).returncode == 0
    assert contents() == new and _temporaries(tmp_path) == []


# --- the stages ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> Path:
    """A project after one ingest run (the previous outputs); its raw data then grows, so the next run differs."""
    root = dvc_project(tmp_path_factory.mktemp("crash") / "p")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MAPWISE_HMAC_KEY", KEY)
        done = run_stage(root, "ingest")
    assert done.returncode == 0, done.stderr
    shop_csv(root / "raw" / "shop.csv", customers=120, seed=1)
    return root


@pytest.mark.parametrize("at", ["write:2", "write:11", "step:7"])
def test_ingest_killed_mid_write_keeps_the_previous_tables_and_the_next_run_completes(ingested, tmp_path, crash_at, at):
    # writes: 1-5 canonical tables, 6-10 quarantine tables, 11 the report; step 7: between canonical's renames
    root = tmp_path / "p"
    shutil.copytree(ingested, root)
    canonical, quarantine, report = root / "data/canonical", root / "data/quarantine", root / "reports/ingest.json"
    before = _files(canonical, quarantine, report)
    crash_at(at)
    assert run_stage(root, "ingest").returncode == KILLED
    killed = _files(canonical, quarantine, report)
    if at == "step:7":  # between canonical's two renames: the previous tables wait aside, whole
        assert not canonical.exists()
        killed |= {str(canonical / p.name): p.read_bytes() for p in (root / "data/.canonical.old").iterdir()}
    assert killed.keys() == before.keys(), "no output lost"
    assert killed[str(report)] == before[str(report)], "the previous report stays until the new one is whole"
    if at == "write:2":
        assert killed == before, "killed before any swap: every previous output intact"
    crash_at(None)
    done = run_stage(root, "ingest")
    assert done.returncode == 0, done.stderr
    after = _files(canonical, quarantine, report)
    assert after != before and json.loads(report.read_text())["sources"] and _temporaries(root) == []
    for path, data in killed.items():  # each output whole: the previous run's or (once swapped in) this run's
        assert data in (before[path], after[path]), f"{path} is torn"


def test_profile_killed_mid_write_keeps_the_previous_profiles_and_report(tmp_path, crash_at):
    root = tiny_project(tmp_path / "p")
    profiles, html = root / "data/profiles/profiles.parquet", root / "reports/profile.html"
    assert run_stage(root, "profile").returncode == 0
    before = _files(profiles, html)
    tiny_events(customers=60, seed=1).write_parquet(root / "data/canonical/events.parquet")
    for at in ("write:1", "write:2"):  # the profiles table, then the HTML report, each cut midway
        crash_at(at)
        assert run_stage(root, "profile").returncode == KILLED
        assert html.read_bytes() == before[str(html)], f"{at}: the previous report is whole"
        if at == "write:1":
            assert profiles.read_bytes() == before[str(profiles)], "the previous profiles table is whole"
    crash_at(None)
    assert run_stage(root, "profile").returncode == 0
    assert pl.read_parquet(profiles).height == 60 and _files(profiles, html) != before and _temporaries(root) == []


def test_export_killed_mid_bundle_keeps_the_previous_bundle_and_the_next_run_completes(exported_root, tmp_path, crash_at):
    root = tmp_path / "p"
    shutil.copytree(exported_root, root, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts"))
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["models"] = ["gru"]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    bundle = root / "models/export/gru"
    before = _files(bundle)
    crash_at("write:1")  # the bundle's items table, after its model.onnx was exported
    assert run_stage(root, "export").returncode == KILLED
    assert _files(bundle) == before, "the previous bundle is whole"
    crash_at(None)
    done = run_stage(root, "export")
    assert done.returncode == 0, done.stderr[-2000:]
    assert load_bundle(bundle).n_items > 0 and _temporaries(root) == []


# --- a batch `dvc add` ---------------------------------------------------------------------------------------

ADD = """
import sys
from pathlib import Path
from flows.retrain import STAGING, add_batch
from mapwise.sources.batches import stage
add_batch.fn(stage(sys.argv[1], STAGING, ["shop"], "incoming"), Path("data/batches"), Path.cwd())
"""


@pytest.mark.parametrize("at", ["dvc-before-dvcfile", "dvc-empty-dvcfile"])
def test_a_batch_killed_during_dvc_add_is_not_accepted_and_adding_it_again_completes(tmp_path, crash_at, at):
    root = tmp_path / "repo"
    root.mkdir()
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=root, env=stage_env(), check=True)
    drop = shop_csv(root / "incoming" / "shop" / "december.csv", customers=5)
    crash_at(at)  # the retrain process and its `dvc add` die together
    done = subprocess.run([sys.executable, "-c", ADD, str(drop)], cwd=root, env=stage_env(), capture_output=True)
    assert done.returncode == KILLED, done.stderr.decode()[-2000:]
    batches = root / "data" / "batches"
    assert batch_files(batches, "shop") == [], "a batch DVC did not finish tracking is not read by ingest"
    crash_at(None)
    status = subprocess.run(["dvc", "status"], cwd=root, env=stage_env(), capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    again = subprocess.run([sys.executable, "-c", ADD, str(drop)], cwd=root, env=stage_env(), capture_output=True)
    assert again.returncode == 0, again.stderr.decode()[-2000:]
    (stored,) = batch_files(batches, "shop")
    assert stored.read_bytes() == drop.read_bytes()
    tracked = yaml.safe_load(stored.with_name(stored.name + ".dvc").read_text())["outs"][0]
    assert tracked["md5"] == hashlib.md5(drop.read_bytes()).hexdigest() and _temporaries(root) == []


def test_a_torn_last_ledger_line_is_skipped_and_cut_off_by_the_next_record(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.record(sha256="abc", status="accepted")
    with ledger.path.open("a") as out:
        out.write('{"at": "2026-01-01T00:00:00+00:00", "sha256": "de')  # a kill mid-append
    assert [e["sha256"] for e in ledger.entries()] == ["abc"]
    ledger.record(sha256="def", status="accepted")
    assert [e["sha256"] for e in ledger.entries()] == ["abc", "def"]
    assert all(json.loads(line) for line in ledger.path.read_text().splitlines())


# --- a full disk ---------------------------------------------------------------------------------------------

FULL_DISK = """
cp -a disk prev
mount -t tmpfs -o size=192k tmpfs disk
cp -a prev/. disk/
"$PY" -m pipelines.ingest > /dev/null 2> stderr.txt || echo $? > rc.txt
cp -a disk after
"""


def test_a_full_disk_is_one_line_and_keeps_the_previous_outputs(ingested, tmp_path, monkeypatch):
    """On a small tmpfs holding the previous outputs, the next (larger) ones cannot be written."""
    monkeypatch.setenv("MAPWISE_HMAC_KEY", KEY)
    root = tmp_path / "p"
    shutil.copytree(ingested, root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["ingest"].update(canonical_dir="disk/canonical", quarantine_dir="disk/quarantine", report="disk/ingest.json")
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert run_stage(root, "ingest").returncode == 0
    shop_csv(root / "raw" / "shop.csv", customers=4000, seed=2)
    private = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]
    probe = subprocess.run([*private, "mount", "-t", "tmpfs", "tmpfs", str(tmp_path)], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a private mount namespace: {probe.stderr.strip()}")
    done = subprocess.run([*private, "sh", "-euc", FULL_DISK], cwd=root, env={**stage_env(), "PY": sys.executable},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (root / "rc.txt").read_text().strip() == "2"
    (line,) = (root / "stderr.txt").read_text().splitlines()
    assert line.startswith("ingest: disk/canonical: disk full while writing; nothing replaced ("), line
    prev = {k.replace("/prev/", "/"): v for k, v in _files(root / "prev").items()}
    after = {k.replace("/after/", "/"): v for k, v in _files(root / "after").items()}
    assert after == prev and sorted(p.name for p in (root / "after").iterdir()) == ["canonical", "ingest.json", "quarantine"]
