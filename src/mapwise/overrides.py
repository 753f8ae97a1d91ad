"""Run with some params changed, then give the workspace back as it was, byte for byte.

DVC stages read `params.yaml`, so an override has to be written there for the length of a run, and the
run rewrites what DVC does not cache (`dvc.lock`, reports). Before it starts, the params file and those
paths are copied to `<dir>/.mapwise/before-overrides/`; `manifest.json`, written last, says which paths
were copied (or did not exist). When the block ends they are put back. A run that dies half-way leaves
the copy, and the next run puts it back before doing anything else (`restore_interrupted`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from mapwise.atomic import write_bytes, write_json
from mapwise.params import Params, parse_params, read_params, with_overrides


def backup_dir(path: Path) -> Path:
    """Where the copies of the workspace before an override run of the params file `path` are kept."""
    return path.parent / ".mapwise" / f"{path.stem}.before-overrides"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, symlinks=True)
    else:
        shutil.copy2(source, target)


def _save(paths: Iterable[Path], folder: Path) -> None:
    """Copy `paths` into `folder`; the manifest, written last, makes the copy count."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    kept = []
    for number, path in enumerate(dict.fromkeys(paths)):
        stored = f"{number}-{path.name}" if path.exists() else None
        if stored:
            _copy(path, folder / stored)
        kept.append([str(path), stored])
    write_json(folder / "manifest.json", kept)


def _restore(folder: Path) -> None:
    """Put every saved path back as it was (absent if it was absent), then drop the copy."""
    for path, stored in json.loads((folder / "manifest.json").read_text()):
        target = Path(path)
        if stored and (folder / stored).is_file():
            write_bytes(target, (folder / stored).read_bytes())
            continue
        _remove(target)
        if stored:
            _copy(folder / stored, target)
    (folder / "manifest.json").unlink()
    shutil.rmtree(folder)


def restore_interrupted(path: Path) -> bool:
    """Put back what an interrupted override run of `path` left changed; True if there was anything."""
    folder = backup_dir(path)
    if not (folder / "manifest.json").exists():
        shutil.rmtree(folder, ignore_errors=True)  # a copy killed before its manifest: nothing was overridden
        return False
    _restore(folder)
    return True


@contextmanager
def restored_if_stopped(paths: Iterable[Path], folder: Path) -> Iterator[None]:
    """Copies of `paths`, put back if the block is stopped (Ctrl-C, a cancel's signal), not if it fails or ends.

    For what DVC deletes before it runs a stage and cannot check out again: outputs it does not cache.
    """
    _save(paths, folder)
    try:
        yield
    except Exception:
        raise
    except BaseException:
        _restore(folder)
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def params_overridden(path: Path, overrides: dict[str, object], keep: Iterable[Path] = ()) -> Iterator[Params]:
    """The params with `overrides` applied, written to `path` while the block runs (validated before).

    `keep`: other paths the run changes that must come back too (files or folders).
    """
    merged = with_overrides(read_params(path), overrides)
    params = parse_params(merged, str(path))
    if not overrides:
        yield params
        return
    folder = backup_dir(path)
    _save([path, *keep], folder)
    write_bytes(path, yaml.safe_dump(merged, sort_keys=False).encode())
    try:
        yield params
    finally:
        _restore(folder)
