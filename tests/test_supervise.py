"""The stage supervisor: output and exit codes pass through; a signal, the death of its caller or an exception in the
caller ends the command's whole process tree and then runs the restore command."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import flows.supervise
from flows.supervise import PARENT_GONE, run_supervised

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

SUPERVISE = str(Path(flows.supervise.__file__).resolve())
GRACE = 0.5

# A stage's process tree: it starts one child that dies on SIGTERM and, once it ignores SIGTERM itself, one that
# inherits that (both need SIGKILL), then writes the three pids to argv[1].
TREE = """
import os, signal, subprocess, sys, time
from pathlib import Path
sleep = [sys.executable, "-c", "import time; time.sleep(1000)"]
meek = subprocess.Popen(sleep)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
stubborn = subprocess.Popen(sleep)
Path(sys.argv[1] + ".tmp").write_text(f"{os.getpid()} {meek.pid} {stubborn.pid}")
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(1000)
"""

# The restore command: writes to argv[2] "restored", or the pids of argv[1] still running when it ran.
RESTORE = """
import sys
from pathlib import Path
def running(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
Path(sys.argv[2]).write_text(" ".join(p for p in Path(sys.argv[1]).read_text().split() if running(p)) or "restored")
"""


def alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (exited, not yet reaped) does not."""
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(check, timeout: float = 10.0) -> bool:
    """Poll `check` until it is true, for up to `timeout` seconds; its last value."""
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)
    return check()


def tree_pids(pidfile: Path, timeout: float = 10.0) -> list[int]:
    """The pids the tree wrote, once it has."""
    assert wait_until(pidfile.exists, timeout), "the tree did not start"
    return [int(pid) for pid in pidfile.read_text().split()]


def assert_gone(pids: list[int]) -> None:
    assert wait_until(lambda: not any(alive(pid) for pid in pids)), f"still running: {[p for p in pids if alive(p)]}"


def tree_and_restore(tmp_path: Path) -> tuple[list[str], list[str], Path, Path]:
    """The tree command, the restore command, and the files they write."""
    pidfile, marker = tmp_path / "pids", tmp_path / "restored"
    return ([sys.executable, "-c", TREE, str(pidfile)], [sys.executable, "-c", RESTORE, str(pidfile), str(marker)],
            pidfile, marker)


def test_output_exit_code_cwd_and_env_pass_through(tmp_path):
    code = "import os, sys; print('hi', os.getcwd(), os.environ['STAGE']); print('oops', file=sys.stderr); sys.exit(3)"
    cmd = [sys.executable, "-c", code]
    done = run_supervised(cmd, cwd=str(tmp_path), env={**os.environ, "STAGE": "train"})
    assert (done.args, done.returncode, done.stdout, done.stderr) == (cmd, 3, f"hi {tmp_path} train\n", "oops\n")

    assert run_supervised([sys.executable, "-c", "import os; os.kill(os.getpid(), 9)"], cwd=str(tmp_path)).returncode == 137
    missing = run_supervised([str(tmp_path / "missing")], cwd=str(tmp_path))
    assert missing.returncode == 127 and "cannot run" in missing.stderr


def test_sigterm_ends_the_whole_tree_then_restores(tmp_path):
    tree, restore, pidfile, marker = tree_and_restore(tmp_path)
    supervisor = subprocess.Popen([sys.executable, SUPERVISE, "--grace", str(GRACE), "--restore", json.dumps(restore), "--",
                                   *tree], stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        pids = tree_pids(pidfile)
        assert all(os.getpgid(pid) == supervisor.pid for pid in pids)  # one process group, the supervisor's
        supervisor.terminate()
        _, stderr = supervisor.communicate(timeout=30)
    finally:
        supervisor.kill()
    assert supervisor.returncode == 128 + signal.SIGTERM, stderr
    assert_gone(pids)
    assert marker.read_text() == "restored"  # and nothing of the tree ran any more when it did
    assert f"(process group {supervisor.pid}) after SIGTERM; SIGKILLed 2 process(es)" in stderr
    assert stderr.endswith(f"; restored with: {shlex.join(restore)}\n")


def test_death_of_the_caller_ends_the_tree_then_restores(tmp_path):
    tree, restore, pidfile, marker = tree_and_restore(tmp_path)
    caller = subprocess.Popen([sys.executable, "-c", f"from flows.supervise import run_supervised; "
                                                     f"run_supervised({tree!r}, cwd='.', restore={restore!r}, grace={GRACE})"])
    try:
        pids = tree_pids(pidfile)
        supervisor = os.getpgid(pids[0])
        caller.kill()
        caller.wait()
        assert_gone([supervisor, *pids])
    finally:
        caller.kill()
        caller.wait()
    assert marker.read_text() == "restored"


def test_the_supervisor_stops_at_once_when_its_caller_is_already_gone():
    sleeper = [sys.executable, "-c", "import time; time.sleep(1000)"]
    done = subprocess.run([sys.executable, SUPERVISE, "--parent", "1", "--", *sleeper], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == PARENT_GONE and "after parent death" in done.stderr


class Interrupted(Exception):
    """Raised in the caller's main thread, as Prefect raises TerminationSignal on cancel."""


def test_an_exception_in_the_caller_ends_the_tree_restores_and_propagates(tmp_path):
    tree, restore, pidfile, marker = tree_and_restore(tmp_path)
    interrupted = Interrupted()

    def interrupt(_signum, _frame):
        if pidfile.exists():
            signal.setitimer(signal.ITIMER_REAL, 0)
            raise interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
    try:
        with pytest.raises(Interrupted) as raised:
            run_supervised(tree, cwd=str(tmp_path), restore=restore, grace=GRACE)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert raised.value is interrupted
    assert marker.read_text() == "restored"  # run_supervised waited for the restore
    assert_gone(tree_pids(pidfile))


def test_group_members_from_proc_and_psutil_agree():
    psutil = pytest.importorskip("psutil")
    group = subprocess.Popen(["sh", "-c", "sleep 1000 & sleep 1000 & wait"], start_new_session=True)
    try:
        assert wait_until(lambda: len(flows.supervise._proc_group(group.pid)) == 3)
        assert flows.supervise._proc_group(group.pid) == flows.supervise._psutil_group(group.pid, psutil)
    finally:
        os.killpg(group.pid, signal.SIGKILL)
        group.wait()
