import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from mapwise.errors import MapwiseError
from mapwise.privacy.forget import (
    append_requests, forgotten, mentions, read_log, read_request_file, scrub,
)
from mapwise.privacy.history import affected, object_path, outputs_at, purge, remote_path, revisions

A, B, C = "a" * 32, "b" * 32, "c" * 32
NOW = datetime(2024, 5, 6, 7, 8, 9, 123, tzinfo=UTC)


# the request log

def test_log_appends_only_and_skips_the_forgotten(tmp_path):
    log = tmp_path / "privacy" / "forget.jsonl"
    assert read_log(log) == [] and forgotten(log) == frozenset()
    new, skipped = append_requests(log, [A, B, A], "cli", now=NOW)
    assert [r.customer_id for r in new] == [A, B] and skipped == [A]
    assert new[0].requested_at == "2024-05-06T07:08:09+00:00" and new[0].origin == "cli"
    assert len(new[0].request_id) == 32 and new[0].request_id != new[1].request_id
    before = log.read_bytes()
    new, skipped = append_requests(log, [B, C], "file:requests.csv", now=NOW)
    assert [r.customer_id for r in new] == [C] and skipped == [B]
    after = log.read_bytes()
    assert after.startswith(before) and after.count(b"\n") == 3
    assert read_log(log)[2] == new[0] and forgotten(log) == {A, B, C}
    assert json.loads(after.splitlines()[2]) == {"request_id": new[0].request_id, "customer_id": C,
                                                 "requested_at": "2024-05-06T07:08:09+00:00",
                                                 "origin": "file:requests.csv"}


def test_a_commented_log_is_empty_and_appends_after_its_comment(tmp_path):
    log = tmp_path / "forget.jsonl"
    log.write_text("# forget requests (see README)\n")  # as committed: an empty dependency upsets DVC
    assert read_log(log) == []
    new, _ = append_requests(log, [A], "cli", now=NOW)
    assert read_log(log) == new and log.read_text().startswith("# forget requests (see README)\n{")


def test_log_refuses_raw_ids_and_names_a_malformed_line(tmp_path):
    log = tmp_path / "forget.jsonl"
    with pytest.raises(MapwiseError, match="not a pseudonym"):
        append_requests(log, ["17850"], "cli")
    assert not log.exists()
    append_requests(log, [A], "cli")
    with log.open("a") as f:
        f.write('{"request_id": "x", "customer_id": "17850"\n')
    with pytest.raises(MapwiseError, match=r"forget\.jsonl: line 2: not a forget request"):
        read_log(log)


def test_request_files(tmp_path):
    text = tmp_path / "ids.txt"
    text.write_text(" 17850\n\n42\n")
    assert read_request_file(text) == ["17850", "42"]
    table = tmp_path / "ids.csv"
    table.write_text("name,customer_id\nx,17850\n\ny, \nz,42\n")
    assert read_request_file(table) == ["17850", "42"]
    single = tmp_path / "single.csv"
    single.write_text("client\n7\n")
    assert read_request_file(single) == ["7"]
    wide = tmp_path / "wide.csv"
    wide.write_text("a,b\n1,2\n")
    with pytest.raises(MapwiseError, match=r"wide\.csv: no 'customer_id' column \(columns: a, b\)"):
        read_request_file(wide)
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(MapwiseError, match="no customer ids"):
        read_request_file(tmp_path / "empty.txt")
    with pytest.raises(MapwiseError, match="cannot read"):
        read_request_file(tmp_path / "absent.txt")


# scrubbing outputs

def events() -> pl.DataFrame:
    return pl.DataFrame({
        "customer_id": [A, B, None, A, C],
        "item_id": ["i1", "i2", "i3", "i4", "i5"],
        "quantity": pl.Series([1, 2, 3, 4, 5], dtype=pl.Int16),
        "channel": pl.Series(["web", "shop", "web", "web", "shop"], dtype=pl.Enum(["web", "shop"])),
    })


def test_scrub_removes_exactly_the_rows_and_never_writes_an_inode(tmp_path):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    events().write_parquet(out / "sub" / "events.parquet")
    events().write_parquet(out / "object-without-suffix")
    os.chmod(out / "object-without-suffix", 0o444)
    pl.DataFrame({"item_id": ["i1"]}).write_parquet(out / "items.parquet")
    (out / "notes.parquet").write_text("customer aaaa, not parquet")
    (out / ".dvc" / "cache").mkdir(parents=True)
    events().write_parquet(out / ".dvc" / "cache" / "obj")
    linked = tmp_path / "elsewhere"
    os.link(out / "sub" / "events.parquet", linked)
    inode = linked.stat().st_ino

    assert mentions([out], {A, B}) == {str(out / "object-without-suffix"): 3, str(out / "sub" / "events.parquet"): 3}
    assert scrub([out], {A, B}) == {str(out / "object-without-suffix"): 3, str(out / "sub" / "events.parquet"): 3}

    for path in (out / "sub" / "events.parquet", out / "object-without-suffix"):
        kept = pl.read_parquet(path)
        assert kept.schema == events().schema
        assert kept.to_dict(as_series=False) == events()[[2, 4]].to_dict(as_series=False)
    assert stat.S_IMODE((out / "object-without-suffix").stat().st_mode) == 0o444
    assert (out / "sub" / "events.parquet").stat().st_ino != inode
    assert pl.read_parquet(linked).equals(events()) and linked.stat().st_ino == inode
    assert pl.read_parquet(out / ".dvc" / "cache" / "obj").equals(events())
    assert mentions([out], {A, B}) == {} and scrub([out], {A, B}) == {}
    assert not [p for p in out.rglob("*.tmp")]


def test_scrub_finds_the_customer_under_any_text_column(tmp_path):
    # a target's test split keys customers by row_id; an audience may hold them as a category
    pl.DataFrame({"row_id": [A, C, None], "label": [1, 0, 1]}).write_parquet(tmp_path / "test.parquet")
    pl.DataFrame({"who": pl.Series([C, B], dtype=pl.Categorical), "n": [1, 2]}).write_parquet(tmp_path / "aud.parquet")
    pl.DataFrame({"n": [1, 2]}).write_parquet(tmp_path / "numbers.parquet")

    assert scrub([tmp_path], {A, B}) == {str(tmp_path / "aud.parquet"): 1, str(tmp_path / "test.parquet"): 1}
    assert pl.read_parquet(tmp_path / "test.parquet").to_dict(as_series=False) == {"row_id": [C, None], "label": [0, 1]}
    assert pl.read_parquet(tmp_path / "aud.parquet")["n"].to_list() == [1]
    assert pl.read_parquet(tmp_path / "numbers.parquet")["n"].to_list() == [1, 2]


def test_scrub_names_a_broken_parquet_file(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 truncated")
    with pytest.raises(MapwiseError, match=r"bad\.parquet: not a readable Parquet file"):
        scrub([tmp_path], {A})


# DVC history

def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


def dvc(repo: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=repo, env=env,
                          capture_output=True, text=True)


def test_history_finds_purges_and_breaks_only_the_old_version(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path / "home"), "DVC_NO_ANALYTICS": "1",
           "DVC_SITE_CACHE_DIR": str(tmp_path / "site"), "DVC_GLOBAL_CONFIG_DIR": str(tmp_path / "global")}
    repo, store = tmp_path / "repo", tmp_path / "store"
    (repo / "data").mkdir(parents=True)
    git(repo, "init", "-q")
    for args in (["init", "-q"], ["config", "core.analytics", "false"], ["remote", "add", "-d", "local", "../store"]):
        assert dvc(repo, env, *args).returncode == 0
    assert remote_path(repo) == store

    events().write_parquet(repo / "data" / "events.parquet")
    (repo / "data" / "readme.txt").write_text(f"mentions {B} but is not Parquet\n")
    assert dvc(repo, env, "add", "-q", "data").returncode == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "v1")
    first = git(repo, "rev-parse", "--short", "HEAD")
    assert dvc(repo, env, "push", "-q").returncode == 0
    manifest = outputs_at(repo, first)[0]
    assert manifest.path == "data" and manifest.is_dir
    old = [e["md5"] for e in json.loads(object_path(repo / ".dvc" / "cache", manifest.md5).read_text())
           if e["relpath"] == "events.parquet"][0]

    events().filter(pl.col("customer_id") != B).write_parquet(repo / "data" / "events.parquet")
    assert dvc(repo, env, "add", "-q", "data").returncode == 0
    git(repo, "commit", "-qam", "v2")
    second = git(repo, "rev-parse", "--short", "HEAD")
    assert dvc(repo, env, "push", "-q").returncode == 0
    assert revisions(repo) == [second, first]

    report = affected(repo, {B}, cache=repo / ".dvc" / "cache", remote=store)
    assert report["objects"] == [{"md5": old, "hash": "md5", "relpath": "events.parquet", "output": "data",
                                  "where": ["cache", "remote"], "revisions": [first], "rows": 1}]
    assert report["revisions"] == [first] and report["missing"] == []
    assert affected(repo, {C}, cache=repo / ".dvc" / "cache", remote=store)["revisions"] == ["workspace", second, first]

    saved = object_path(store, old).read_bytes()
    kept = sorted(p for p in store.rglob("*") if p.is_file() and p.name != object_path(store, old).name)
    removed = purge(report, cache=repo / ".dvc" / "cache", remote=store)
    assert removed == {"cache": [str(object_path(repo / ".dvc" / "cache", old))],
                       "remote": [str(object_path(store, old))]}
    assert sorted(p for p in store.rglob("*") if p.is_file()) == kept
    assert affected(repo, {B}, cache=repo / ".dvc" / "cache", remote=store)["objects"] == []

    (repo / "data" / "events.parquet").unlink()
    assert dvc(repo, env, "checkout", "-q").returncode == 0
    assert pl.read_parquet(repo / "data" / "events.parquet")["customer_id"].to_list() == [A, A, C]
    git(repo, "checkout", "-q", first)
    failed = dvc(repo, env, "checkout")
    assert failed.returncode != 0 and "Checkout failed for following targets:\ndata" in failed.stderr
    object_path(repo / ".dvc" / "cache", old).write_bytes(saved)  # the purged object was the only thing missing
    assert dvc(repo, env, "checkout", "-q").returncode == 0
    assert pl.read_parquet(repo / "data" / "events.parquet").equals(events())


def test_outputs_skip_uncached_ones_and_remote_urls(tmp_path):
    repo = tmp_path / "repo"
    (repo / ".dvc").mkdir(parents=True)
    (repo / "params.yaml").write_text("report: reports/r.json\nout: data/out\n")
    (repo / "dvc.yaml").write_text("stages:\n  s:\n    cmd: x\n    outs:\n    - ${out}\n"
                                   "    metrics:\n    - ${report}:\n        cache: false\n")
    (repo / "dvc.lock").write_text(f"schema: '2.0'\nstages:\n  s:\n    cmd: x\n    outs:\n"
                                   f"    - path: data/out\n      hash: md5\n      md5: {A}.dir\n"
                                   f"    - path: reports/r.json\n      hash: md5\n      md5: {B}\n")
    (repo / "old.dvc").write_text(f"outs:\n- md5: {C}\n  path: old.csv\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "one")
    outs = outputs_at(repo, "HEAD")
    assert [(o.path, o.md5, o.is_dir, o.hash) for o in outs] == [
        ("data/out", f"{A}.dir", True, "md5"), ("old.csv", C, False, "md5-dos2unix")]
    assert object_path(tmp_path, C, "md5-dos2unix") == tmp_path / "cc" / ("c" * 30)
    report = affected(repo, {A}, cache=tmp_path / "cache", remote=None)
    assert {m["md5"] for m in report["missing"]} == {f"{A}.dir", C} and report["objects"] == []

    config = repo / ".dvc" / "config"
    config.write_text("[core]\n    remote = s3\n['remote \"s3\"']\n    url = s3://bucket/x\n")
    assert remote_path(repo) is None
    (repo / ".dvc" / "config.local").write_text("[core]\n    remote = mine\n['remote \"mine\"']\n    url = ~/store\n")
    assert remote_path(repo) == Path("~/store").expanduser()
