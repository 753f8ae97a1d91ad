"""The service as deployed: `mapwise serve` in real uvicorn worker processes, over a real registry and raw sockets."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml

from conftest import KEY
from mapwise.bundles.registry import Decision, apply, register_bundle

TIMEOUT, MAX_HEADER = 1, 4096  # the read bounds of the server under test (serve.request_timeout_seconds, max_header_bytes)


@contextmanager
def serving(root: Path, log: Path, **serve) -> Iterator[str]:
    """`mapwise serve` run in `root` with its params.yaml and these serve params; its URL once it answers."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    params["serve"].update(serve, host="127.0.0.1", port=port)
    (root / "serve.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "MAPWISE_HMAC_KEY": KEY.decode()}
    env.pop("MLFLOW_TRACKING_URI", None)
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", "mapwise", "serve", "--params", "serve.yaml"], cwd=root,
                                  env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: server.poll() is not None or _answers(url), log)
        assert server.poll() is None, log.read_text()[-3000:]
        yield url
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def _wait_for(condition, log: Path, seconds: float = 120) -> None:
    """Poll until the condition holds; past the (generous) deadline, fail with the server's log."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"condition not reached; server log:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)


# --- two workers over a real registry --------------------------------------------------------------------------


def _workers_serving(log: Path, version: str) -> set[str]:
    """The worker processes that logged loading this version."""
    return set(re.findall(rf"\[(\d+)\] mapwise\.serving\.keepers INFO serving model version {version} ", log.read_text()))


def _answered_by(url: str, versions: set[str]) -> bool:
    """One request on a new connection (so each worker gets some): 200, from one of these versions."""
    done = httpx.post(f"{url}/recommendations", json={"customer_id": "x", "k": 3}, headers={"connection": "close"},
                      timeout=30)
    assert done.status_code == 200, done.text
    assert done.json()["model"]["version"] in versions, done.json()["model"]
    return True


def _copy_of(bundle: Path, out: Path, n: int) -> Path:
    """The same model under another digest: a new registry version, quick to make."""
    shutil.copytree(bundle, out)
    meta = json.loads((out / "metadata.json").read_text())
    (out / "metadata.json").write_text(json.dumps({**meta, "note": f"copy {n}"}))
    return out


def test_two_workers_share_each_download_and_follow_the_champion_together(project, tmp_path):
    name, gru = project.register.model_name, project.export.out_dir / "gru"
    register_bundle(project.tracking, name, gru)
    apply(project.tracking, Decision("force", name, "1", None, "1", "test"))
    log, cache = tmp_path / "serve.log", tmp_path / "cache"
    with serving(Path.cwd(), log, workers=2, poll_seconds=0.05, cache_dir=str(cache)) as url:
        _wait_for(lambda: len(_workers_serving(log, "1")) == 2, log)  # cold start: both workers load version 1
        workers = _workers_serving(log, "1")
        assert all(_answered_by(url, {"1"}) for _ in range(10))

        # each promotion is a fresh chance for the two workers to download the same version at the same moment
        promoted = [project.export.out_dir / "sasrec", *(_copy_of(gru, tmp_path / f"gru{n}", n) for n in range(3))]
        for version, bundle in enumerate(promoted, start=2):
            before, now = str(version - 1), str(version)
            register_bundle(project.tracking, name, bundle)
            apply(project.tracking, Decision("force", name, now, before, now, "test"))
            _wait_for(lambda v={before, now}, now=now: _answered_by(url, v) and _workers_serving(log, now) == workers,
                      log)
            assert all(_answered_by(url, {now}) for _ in range(10))
        assert httpx.get(f"{url}/model").json()["refused"] == {}
    assert "refused" not in log.read_text() and "Traceback" not in log.read_text()
    folders = [p.name for p in (cache / name).iterdir() if not p.name.endswith(".lock")]
    assert sorted(f.split("-")[0] for f in folders) == ["1", "2", "3", "4", "5"], folders  # one each, none partial


# --- read bounds, on raw sockets ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(exported_root, tmp_path_factory) -> Iterator[str]:
    """One worker serving a bundle folder, with tight read bounds."""
    root = tmp_path_factory.mktemp("bounded")
    (root / "params.yaml").write_text((exported_root / "params.yaml").read_text())
    with serving(root, root / "serve.log", model=str(exported_root / "models/export/sasrec"), workers=1,
                 request_timeout_seconds=TIMEOUT, max_header_bytes=MAX_HEADER) as url:
        yield url


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def _until_closed(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset, when it left bytes of ours unread, ends it too)."""
    data = b""
    try:
        while chunk := conn.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def _response(conn: socket.socket) -> tuple[int, dict]:
    """The status and JSON body of the server's one response, after which it closed the connection."""
    head, _, body = _until_closed(conn).partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower(), head
    return int(head.split()[1]), json.loads(body)


def _one_response(conn: socket.socket) -> bytes:
    """One response on a kept-alive connection (it has a Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < int(
            re.search(rb"content-length: (\d+)", data.lower()).group(1)):
        data += conn.recv(65536)
    return data


def _assert_error_shape(body: dict) -> None:
    assert list(body) == ["error"] and isinstance(body["error"], str) and "\n" not in body["error"], body


def test_normal_requests_still_work(server):
    with _connect(server) as conn:  # keep-alive: two requests on one connection, the head sent in pieces
        for _ in range(2):
            for piece in (b"GET /health HTTP/1.1\r\n", b"Host: t\r\nX-Pad: " + b"p" * (MAX_HEADER // 2), b"\r\n\r\n"):
                conn.sendall(piece)
            assert _one_response(conn).startswith(b"HTTP/1.1 200 ")
    body = json.dumps({"customer_id": "x", "k": 3}).encode()
    with _connect(server) as conn:  # a body in pieces, within the deadline
        conn.sendall(b"POST /recommendations HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body))
        conn.sendall(body[:5])
        conn.sendall(body[5:])
        data = _until_closed(conn)
    assert data.startswith(b"HTTP/1.1 200 ") and b'"items"' in data


def test_a_slowloris_is_cut_off(server):
    """Headers trickled forever: the connection is answered 408 and closed, however steady the trickle."""
    with _connect(server) as conn:
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n")
        conn.settimeout(0.2)
        deadline = time.monotonic() + 60
        received = b""
        while time.monotonic() < deadline:
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                try:
                    conn.sendall(b"X-More: 1\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    break
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        else:
            pytest.fail("a trickled request head was never cut off")
    assert received == b"" or received.startswith(b"HTTP/1.1 408 "), received


@pytest.mark.parametrize("sent", [
    b"",
    b"GET /health HTTP/1.1\r\nHost: t\r\n",
    b"POST /recommendations HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"cu",
], ids=["nothing", "half-a-head", "part-of-the-body"])
def test_a_stalled_request_gets_408_and_is_closed(server, sent):
    with _connect(server) as conn:
        conn.sendall(sent)
        status, body = _response(conn)
    assert status == 408 and "not received within" in body["error"]
    _assert_error_shape(body)


@pytest.mark.parametrize("head", [
    b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * (16 * MAX_HEADER),
    b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * (2 * MAX_HEADER) + b"\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: t\r\n" + b"X-Many: 1234567890\r\n" * (MAX_HEADER // 10) + b"\r\n",
], ids=["one-header-never-finished", "one-header-whole", "many-headers-whole"])
def test_an_oversized_head_gets_431_and_the_rest_is_not_read(server, head):
    with _connect(server) as conn:
        conn.sendall(head)
        status, body = _response(conn)
        assert status == 431 and f"over {MAX_HEADER} bytes" in body["error"]
        _assert_error_shape(body)
        with pytest.raises((BrokenPipeError, ConnectionResetError)):  # closed: more of the header goes nowhere
            for _ in range(1000):
                conn.sendall(b"a" * 65536)


def test_an_unparsable_request_gets_the_same_error_shape(server):
    with _connect(server) as conn:
        conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        status, body = _response(conn)
    assert status == 400
    _assert_error_shape(body)
