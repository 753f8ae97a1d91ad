"""Test-only: a process with this folder on PYTHONPATH dies by SIGKILL where $MAPWISE_CRASH_AT says.

- `write:N`: the N-th file write (polars `write_parquet`, `Path.write_text`/`write_bytes`) runs, the file
  it wrote is cut to half its bytes (a write caught midway), then the process is killed.
- `step:N`: killed just before the N-th `os.replace`, `os.rename` or `shutil.rmtree`.
- `dvc-before-dvcfile` / `dvc-empty-dvcfile`: inside `dvc add`, once the data is cached, the `dvc` process
  and its parent (the caller) are killed before DVC writes `<file>.dvc`, or once it has created it empty.
"""

import os
import signal

KIND, _, N = os.environ.get("MAPWISE_CRASH_AT", "").partition(":")
_calls = [0]


def _parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def _die(parent: bool = False) -> None:
    if parent:  # the caller; where dvc runs under flows/supervise.py, the supervisor and the caller above it
        caller = os.getppid()
        with open(f"/proc/{caller}/cmdline", "rb") as cmdline:
            if b"supervise.py" in cmdline.read():
                os.kill(_parent_of(caller), signal.SIGKILL)
        os.kill(caller, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _nth() -> bool:
    _calls[0] += 1
    return _calls[0] == int(N)


def _torn(write, path_of):
    def wrapper(*args, **kwargs):
        result = write(*args, **kwargs)
        if _nth():
            path = path_of(args)
            os.truncate(path, os.path.getsize(path) // 2)
            _die()
        return result

    return wrapper


def _before(call):
    def wrapper(*args, **kwargs):
        if _nth():
            _die()
        return call(*args, **kwargs)

    return wrapper


def _dvcfile(path, *args, **kwargs):
    if KIND == "dvc-empty-dvcfile":
        open(path, "w").close()
    _die(parent=True)


if KIND == "write":
    import pathlib

    import polars

    pathlib.Path.write_text = _torn(pathlib.Path.write_text, lambda args: args[0])
    pathlib.Path.write_bytes = _torn(pathlib.Path.write_bytes, lambda args: args[0])
    polars.DataFrame.write_parquet = _torn(polars.DataFrame.write_parquet, lambda args: args[1])
elif KIND == "step":
    import shutil

    os.replace, os.rename, shutil.rmtree = _before(os.replace), _before(os.rename), _before(shutil.rmtree)
elif KIND.startswith("dvc-"):
    import dvc.dvcfile

    dvc.dvcfile.dump_yaml = _dvcfile  # how DVC writes a `.dvc` file
