"""Run a stage so that cancelling or killing its caller ends the stage's whole process tree.

A stage is `dvc repro`, which starts `python -m pipelines.<stage>`, which may start processes of its own. When Prefect
cancels a flow run (SIGTERM, then SIGKILL) or the flow process crashes, all of these would keep running as orphans,
and DVC has already removed the stage's outputs from the workspace. So the caller starts this supervisor in a session
of its own (`run_supervised`); it runs the command in its process group and, when it is signalled (SIGTERM, SIGINT,
SIGHUP) or its parent dies, SIGTERMs the group, SIGKILLs what is left after a grace period, then runs a restore command
(`dvc checkout`) to put the workspace back as DVC had it.

Standard library only and runnable by file path, so it imports nothing from this project:
`python supervise.py [--grace SECONDS] [--restore CMD_JSON] [--parent PID] -- cmd args...`
Exit codes: the command's own (128+N if signal N ended it; 127 if it could not be started); 128+N when signal N
stopped it; PARENT_GONE (125) when its parent died.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from types import ModuleType

PARENT_GONE = 125  # exit code when the supervisor stopped the command because its parent died
CANNOT_RUN = 127  # exit code when the command could not be started (as a shell's)
RESTORE_SECONDS = 120.0  # the most the restore command may take (run_supervised waits grace + this)
KILL_SECONDS = 5.0  # how long SIGKILLed processes are waited for before they are reported as left
POLL_SECONDS = 0.2
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
PR_SET_PDEATHSIG = 1


def run_supervised(cmd: list[str], *, cwd: str, env: dict[str, str] | None = None, restore: list[str] | None = None,
                   grace: float = 10.0) -> subprocess.CompletedProcess[str]:
    """Run `cmd` under the supervisor, in a session of its own, with its output captured as text.

    Any exception while waiting (KeyboardInterrupt, Prefect's TerminationSignal, ...) SIGTERMs the supervisor, which
    ends `cmd`'s process group and runs `restore`; it is waited for, then the exception is re-raised.
    """
    argv = [sys.executable, "-I", str(Path(__file__).resolve()), "--grace", str(grace), "--parent", str(os.getpid())]
    if restore is not None:
        argv += ["--restore", json.dumps(restore)]
    # Not subprocess.run: on an exception it SIGKILLs the supervisor, which would orphan the command's processes.
    proc = subprocess.Popen([*argv, "--", *cmd], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate()
    except BaseException:
        _stop(proc, grace + RESTORE_SECONDS)
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def _stop(proc: subprocess.Popen[str], timeout: float) -> None:
    """SIGTERM the supervisor and wait for it, still draining its output; SIGKILL its whole group after `timeout` s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def main(argv: list[str]) -> int:
    """The supervisor: run the command until it exits, or stop its group, restore, and say so on stderr."""
    opts, cmd = _parse(argv)
    if os.getpgrp() != os.getpid():  # not started in a session of its own: never signal the caller's group
        os.setpgid(0, 0)
    signals: list[int] = []
    for sig in STOP_SIGNALS:  # noted, never fatal: the supervisor also gets the SIGTERM it sends its group
        signal.signal(sig, lambda signum, _frame: signals.append(signum))
    parent = os.getppid() if opts.parent is None else opts.parent
    _die_with_parent()
    try:
        child = subprocess.Popen(cmd)
    except OSError as err:
        _say(f"supervise: cannot run {shlex.join(cmd)}: {err}\n")
        return CANNOT_RUN
    while not signals and os.getppid() == parent:
        with suppress(subprocess.TimeoutExpired):
            code = child.wait(POLL_SECONDS)
            return code if code >= 0 else 128 - code
    parent_gone = os.getppid() != parent
    pgid = os.getpgrp()
    killed, left = _end_group(pgid, child, opts.grace)
    why = "parent death" if parent_gone else signal.Signals(signals[0]).name
    report = [f"stopped: {shlex.join(cmd)} (process group {pgid}) after {why}"]
    if killed:
        report.append(f"SIGKILLed {len(killed)} process(es) still running after {opts.grace:g}s")
    if left:
        report.append(f"could not end {' '.join(map(str, sorted(left)))}")
    if opts.restore:
        report.append(_restore(opts.restore))
    _say("; ".join(report) + "\n")
    return PARENT_GONE if parent_gone else 128 + signals[0]


def _parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The options before `--`, and the command after it."""
    parser = argparse.ArgumentParser(prog="supervise.py", description=__doc__.splitlines()[0],
                                     usage="%(prog)s [--grace SECONDS] [--restore CMD_JSON] [--parent PID] -- cmd [args...]")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds between SIGTERM and SIGKILL (default 10)")
    parser.add_argument("--restore", type=_argv_json, help='command run after a stop, as a JSON list: ["dvc", "checkout"]')
    parser.add_argument("--parent", type=int, help="the process whose death stops the command (default: the parent at start)")
    split = argv.index("--") if "--" in argv else len(argv)
    opts = parser.parse_args(argv[:split])
    if not argv[split + 1:]:
        parser.error("no command after --")
    return opts, argv[split + 1:]


def _argv_json(text: str) -> list[str]:
    """A command given as a JSON list of strings."""
    try:
        argv = json.loads(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not JSON: {err}") from None
    if not argv or not isinstance(argv, list) or not all(isinstance(arg, str) for arg in argv):
        raise argparse.ArgumentTypeError("not a non-empty JSON list of strings")
    return argv


def _die_with_parent() -> None:
    """On Linux, have the kernel SIGTERM the supervisor when its parent exits (polling `os.getppid` covers the rest)."""
    if sys.platform.startswith("linux"):
        with suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGTERM))


def _end_group(pgid: int, child: subprocess.Popen[bytes], grace: float) -> tuple[set[int], set[int]]:
    """SIGTERM the group, SIGKILL its members left after `grace` seconds; those SIGKILLed, and those still left."""
    os.killpg(pgid, signal.SIGTERM)  # the supervisor's own handler only notes it
    os.killpg(pgid, signal.SIGCONT)  # stopped processes act on SIGTERM only once continued
    deadline = time.monotonic() + grace
    while (left := _members(pgid, child)) and time.monotonic() < deadline:
        time.sleep(0.05)
    killed: set[int] = set()
    deadline = time.monotonic() + KILL_SECONDS
    while left and time.monotonic() < deadline:
        for pid in left:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed |= left
        time.sleep(0.05)
        left = _members(pgid, child)
    return killed, left


def _members(pgid: int, child: subprocess.Popen[bytes]) -> set[int]:
    """The live processes of group `pgid` but the supervisor: from /proc, else psutil, else just the command's."""
    child.poll()  # reap it once it exits
    if os.path.isdir("/proc/self"):
        return _proc_group(pgid)
    try:
        import psutil
    except ImportError:
        return set() if child.returncode is not None else {child.pid}
    return _psutil_group(pgid, psutil)


def _proc_group(pgid: int) -> set[int]:
    """The processes of group `pgid` in /proc, zombies and the supervisor left out."""
    members = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:  # gone meanwhile
                continue
            state, _ppid, group = stat[stat.rindex(")") + 1:].split()[:3]
            if state != "Z" and int(group) == pgid:
                members.add(int(entry.name))
    return members


def _psutil_group(pgid: int, psutil: ModuleType) -> set[int]:
    """The processes of group `pgid` as psutil lists them, zombies and the supervisor left out."""
    members = set()
    for proc in psutil.process_iter(["status"]):
        with suppress(OSError, psutil.Error):
            if proc.pid != os.getpid() and proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                members.add(proc.pid)
    return members


def _restore(restore: list[str]) -> str:
    """Run the restore command, relaying its output to stderr; how it went."""
    try:
        done = subprocess.run(restore, stdin=subprocess.DEVNULL, capture_output=True, check=False, timeout=RESTORE_SECONDS)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"restore failed: {shlex.join(restore)}: {err}"
    _say((done.stdout + done.stderr).decode(errors="replace"))
    return f"{'restored' if done.returncode == 0 else f'restore failed (exit {done.returncode})'} with: {shlex.join(restore)}"


def _say(text: str) -> None:
    """Write to stderr, unbuffered; nothing when nobody reads it any more (the parent died)."""
    data = text.encode(errors="replace")
    with suppress(OSError):
        while data:
            data = data[os.write(2, data):]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
