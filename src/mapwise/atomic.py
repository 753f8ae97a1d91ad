"""Outputs replaced whole or not at all: a kill or a full disk never leaves half a file or a mix of two runs.

A file is written as `.<name>.tmp` beside its target (same filesystem), fsync'd, then renamed over it
(`os.replace` is atomic). A folder is built as `.<name>.new` beside it, then swapped in: `<name>` ->
`.<name>.old`, `.<name>.new` -> `<name>`, `.old` removed. The next write of the same output repairs a
killed one (`recover_folder`): between the two renames it puts `.old` back; after them it drops `.old`;
an unfinished `.new` or `.tmp` is discarded. On any error the temporary is removed and the previous
output is left as it was; a full disk (ENOSPC, EDQUOT, EFBIG) is a one-line MapwiseError naming the target.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mapwise.errors import MapwiseError

if TYPE_CHECKING:
    import polars as pl

_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_OS_ERROR = re.compile(r"\(os error (\d+)\)")  # how Rust-backed writers (polars) report an OSError


def _disk_full(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno is not None:
        return err.errno in _FULL
    found = _OS_ERROR.search(str(err))
    return (found is not None and int(found.group(1)) in _FULL) or "No space left on device" in str(err)


def _full_error(target: Path) -> MapwiseError:
    free = shutil.disk_usage(target.parent if target.parent.exists() else Path.cwd()).free
    return MapwiseError(f"{target}: disk full while writing; nothing replaced ({free / 1e6:.1f} MB free)")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside `path`: what the block writes there replaces `path` when the block ends."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.unlink(missing_ok=True)  # a killed write's leftover
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if _disk_full(err):
            raise _full_error(path) from None
        raise


def write_bytes(path: Path, data: bytes) -> None:
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data: object, **dumps: Any) -> None:
    """`data` as JSON, indented unless `dumps` (json.dumps options) says otherwise."""
    write_text(path, json.dumps(data, **{"indent": 2, **dumps}) + "\n")


def write_parquet(path: Path, frame: pl.DataFrame) -> None:
    with replacing(path) as tmp:
        frame.write_parquet(tmp)


def move(source: Path, target: Path) -> None:
    """Move a file whole: a rename on one filesystem, else a copy replacing `target`, then `source` removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, target)
    except OSError as err:
        if err.errno != errno.EXDEV:
            raise
        with replacing(target) as tmp:
            shutil.copyfile(source, tmp)
        source.unlink()
    _fsync(target.parent)


def _siblings(folder: Path) -> tuple[Path, Path]:
    return folder.with_name(f".{folder.name}.new"), folder.with_name(f".{folder.name}.old")


def recover_folder(folder: Path) -> None:
    """Repair a swap that was killed: the previous folder back if the new one was never put in place."""
    new, old = _siblings(folder)
    if old.exists():
        if folder.exists():
            shutil.rmtree(old)  # killed after the swap: the new folder is complete
        else:
            os.replace(old, folder)  # killed between the renames: the previous folder back
    shutil.rmtree(new, ignore_errors=True)  # a build that never finished


def new_folder(folder: Path) -> Path:
    """An empty hidden sibling to build the next `folder` in (see `swap_in`); a killed swap is repaired first."""
    recover_folder(folder)
    build, _ = _siblings(folder)
    build.mkdir(parents=True)
    return build


def swap_in(build: Path, folder: Path) -> None:
    """Put the finished `build` in place of `folder` (synced first): readers see the old folder or the new, whole."""
    for path in sorted(build.rglob("*"), reverse=True):
        _fsync(path)
    _fsync(build)
    _, old = _siblings(folder)
    if folder.exists():
        os.replace(folder, old)
    os.replace(build, folder)
    _fsync(folder.parent)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def replacing_folder(folder: Path) -> Iterator[Path]:
    """A hidden folder to write into: it replaces `folder` whole when the block ends, and is discarded on error."""
    try:
        build = new_folder(folder)
        yield build
        swap_in(build, folder)
    except BaseException as err:
        recover_folder(folder)  # the build discarded; the previous folder back if the swap had begun
        if _disk_full(err):
            raise _full_error(folder) from None
        raise
