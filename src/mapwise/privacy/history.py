"""Forgetting in DVC's history: find and delete the cached objects of older versions that still hold a customer.

`scrub` rewrites the current outputs, but every version DVC ever cached stays in its cache and in the remote,
restorable by checking out an old commit. DVC 3 keeps each file once, content-addressed, at
`<cache>/files/md5/<2 hex>/<30 hex>` (files hashed by DVC 2 at `<cache>/<2 hex>/<30 hex>`); a folder is a
`<md5>.dir` manifest listing its files' md5s; a local remote has the same layout. `affected` walks every commit
(and the working tree) through its dvc.lock and .dvc files to the objects, and checks the Parquet ones for the
customers; `purge` deletes exactly those. Their revisions then fail to check out: that is the point.
"""

from __future__ import annotations

import configparser
import json
import os
import posixpath
import re
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from mapwise.bounded_yaml import load_yaml
from mapwise.errors import MapwiseError, one_line
from mapwise.privacy.forget import mentions

WORKSPACE = "workspace"  # the working tree's dvc.lock and .dvc files, committed or not
_MD5 = re.compile(r"[0-9a-f]{32}(\.dir)?")
_READ = {"dvc.lock", "dvc.yaml", "params.yaml"}  # what a revision's outputs are read from
_VAR = re.compile(r"\$\{\s*([\w.-]+)\s*\}")
_REMOTE_SECTION = re.compile(r"""^'?remote\s+"(.+)"'?$""")
_LOCATIONS = ("cache", "remote")


@dataclass(frozen=True)
class Output:
    """A cached output as one revision records it."""

    path: str  # in the workspace, relative to the repository root
    md5: str  # a folder's ends in ".dir"
    is_dir: bool
    hash: str = "md5"  # DVC 3's; "md5-dos2unix" for outputs hashed by DVC 2 (stored outside files/md5)


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if done.returncode:
        raise MapwiseError(f"{repo}: git {args[0]} failed ({one_line(done.stderr)})")
    return done.stdout


def _read_here(name: str) -> bool:
    return name in _READ or name.endswith(".dvc")


def _listing(repo: Path, rev: str) -> dict[str, str]:
    """{path: blob sha} of the files at `rev` that outputs are read from."""
    found = {}
    for entry in _git(repo, "ls-tree", "-r", "-z", "--full-tree", rev).split("\0"):
        meta, _, path = entry.partition("\t")
        if path and meta.split()[1] == "blob" and _read_here(posixpath.basename(path)):
            found[path] = meta.split()[2]
    return found


def _with_dvc(listing: dict[str, str]) -> bool:
    return any(p.endswith(".dvc") or posixpath.basename(p) == "dvc.lock" for p in listing)


def _history(repo: Path) -> list[tuple[str, dict[str, str]]]:
    revs = _git(repo, "rev-list", "--all", "--abbrev-commit").split()
    listed = [(rev, _listing(repo, rev)) for rev in revs]
    return [(rev, listing) for rev, listing in listed if _with_dvc(listing)]


def revisions(repo: Path) -> list[str]:
    """Short shas of the commits reachable from any ref (DVC experiments too) that have DVC outputs, newest first."""
    return [rev for rev, _ in _history(repo)]


def _yaml(text: str, where: str) -> dict:
    data = load_yaml(text, where)
    return data if isinstance(data, dict) else {}


def _lookup(context: dict, dotted: str) -> Any:
    value: Any = context
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _uncached(files: dict[str, str], folder: str) -> set[str]:
    """Paths of the `cache: false` outputs of the dvc.yaml in `folder` (`${...}` from its params.yaml and vars)."""
    spec = _yaml(files.get(posixpath.join(folder, "dvc.yaml"), ""), posixpath.join(folder, "dvc.yaml"))
    context = _yaml(files.get(posixpath.join(folder, "params.yaml"), ""), posixpath.join(folder, "params.yaml"))
    for extra in spec.get("vars") or []:
        if isinstance(extra, dict):
            context.update(extra)

    def resolve(match: re.Match) -> str:
        value = _lookup(context, match.group(1))
        return match.group(0) if value is None or isinstance(value, dict | list) else str(value)

    paths = set()
    for stage in (spec.get("stages") or {}).values():
        for kind in ("outs", "metrics", "plots"):
            for entry in (stage.get(kind) or []) if isinstance(stage, dict) else []:
                for path, options in entry.items() if isinstance(entry, dict) else []:
                    if isinstance(options, dict) and options.get("cache") is False:
                        paths.add(posixpath.normpath(_VAR.sub(resolve, path)))
    return paths


def _output(folder: str, out: Any) -> Output | None:
    if not isinstance(out, dict) or not _MD5.fullmatch(str(out.get("md5", ""))) or not out.get("path"):
        return None  # not hashed with md5 (cloud-versioned, or never computed)
    md5 = out["md5"]
    return Output(posixpath.normpath(posixpath.join(folder, str(out["path"]))), md5, md5.endswith(".dir"),
                  "md5" if out.get("hash") == "md5" else "md5-dos2unix")


def _outputs(files: dict[str, str], where: str) -> list[Output]:
    """The cached outputs recorded by the dvc.lock and .dvc files among `files` ({path: text})."""
    found = []
    for path, text in sorted(files.items()):
        folder, name = posixpath.split(path)
        if name == "dvc.lock":
            lock = _yaml(text, f"{where}:{path}")
            stages = (lock.get("stages") or {}) if "schema" in lock else lock  # DVC 1 locks have no `stages` level
            uncached = _uncached(files, folder)
            outs = [o for s in stages.values() if isinstance(s, dict) for o in s.get("outs") or []]
            found += [o for o in (_output(folder, o) for o in outs) if o and o.path not in uncached]
        elif name.endswith(".dvc"):
            outs = [o for o in _yaml(text, f"{where}:{path}").get("outs") or [] if o.get("cache", True) is not False]
            found += [o for o in (_output(folder, o) for o in outs) if o]
    return found


def _blobs(repo: Path, listing: dict[str, str]) -> dict[str, str]:
    return {path: _git(repo, "cat-file", "blob", sha) for path, sha in listing.items()}


def outputs_at(repo: Path, rev: str) -> list[Output]:
    """The cached outputs that commit `rev` records in its dvc.lock and .dvc files."""
    return _outputs(_blobs(repo, _listing(repo, rev)), rev)


def _workspace_outputs(repo: Path) -> list[Output]:
    paths = _git(repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    files = {p: (repo / p).read_text() for p in paths if _read_here(posixpath.basename(p)) and (repo / p).is_file()}
    return _outputs(files, WORKSPACE)


def object_path(root: Path, md5: str, hash_name: str = "md5") -> Path:
    """Where a cache or local remote at `root` keeps object `md5`."""
    if not _MD5.fullmatch(md5) or hash_name not in ("md5", "md5-dos2unix"):
        raise MapwiseError(f"{md5!r}: not a DVC object ({hash_name})")
    base = root / "files" / "md5" if hash_name == "md5" else root
    return base / md5[:2] / md5[2:]


def _manifest(path: Path) -> list[tuple[str, str]] | None:
    try:
        entries = json.loads(path.read_text())
        return [(e["md5"], e["relpath"]) for e in entries if _MD5.fullmatch(e["md5"])]
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _snapshots(repo: Path) -> list[tuple[str, list[Output]]]:
    """(revision, outputs) for the working tree and every revision; identical lock files are parsed once."""
    parsed: dict[tuple, list[Output]] = {}
    snapshots = [(WORKSPACE, _workspace_outputs(repo))]
    for rev, listing in _history(repo):
        key = tuple(sorted(listing.items()))
        if key not in parsed:
            parsed[key] = _outputs(_blobs(repo, listing), rev)
        snapshots.append((rev, parsed[key]))
    return snapshots


def affected(repo: Path, pseudonyms: set[str], *, cache: Path, remote: Path | None) -> dict:
    """The cached objects of any revision (or the working tree) that hold these customers.

    Returns {"objects": [{md5, hash, relpath, output, where, revisions, rows}], "revisions": the revisions that
    cannot be fully restored once those are purged, "missing": [{md5, hash, relpath, output, revisions, reason}]
    for objects found in neither cache nor remote, or unreadable (they could not be checked)}. `relpath` is the
    file's path inside a folder output (null for a file output); `where` lists "cache" and/or "remote".
    """
    roots = {"cache": cache, "remote": remote}
    seen: dict[tuple[str, str], dict] = {}
    manifests: dict[tuple[str, str], list[tuple[str, str]] | None] = {}

    def copies(md5: str, hash_name: str) -> list[str]:
        return [name for name in _LOCATIONS if roots[name] and object_path(roots[name], md5, hash_name).is_file()]

    def sight(md5: str, hash_name: str, output: str, relpath: str | None, rev: str) -> None:
        entry = seen.setdefault((md5, hash_name), {"md5": md5, "hash": hash_name, "relpath": relpath,
                                                   "output": output, "revisions": []})
        if rev not in entry["revisions"]:
            entry["revisions"].append(rev)

    snapshots = _snapshots(repo)
    for rev, outputs in snapshots:
        for out in outputs:
            if not out.is_dir:
                sight(out.md5, out.hash, out.path, None, rev)
                continue
            if (out.md5, out.hash) not in manifests:
                where = copies(out.md5, out.hash)
                found = object_path(roots[where[0]], out.md5, out.hash) if where else None
                manifests[out.md5, out.hash] = _manifest(found) if found else None
            entries = manifests[out.md5, out.hash]
            if entries is None:
                sight(out.md5, out.hash, out.path, None, rev)  # reported missing below: its files are unknown
            for md5, relpath in entries or []:
                sight(md5, out.hash, out.path, relpath, rev)

    objects, missing = [], []
    for entry in seen.values():
        where = copies(entry["md5"], entry["hash"])
        if entry["md5"].endswith(".dir"):  # only sighted when its manifest could not be read
            missing.append({**entry, "reason": "folder manifest unreadable" if where else "not in cache or remote"})
            continue
        if not where:
            missing.append({**entry, "reason": "not in cache or remote"})
            continue
        path = object_path(roots[where[0]], entry["md5"], entry["hash"])
        try:
            rows = mentions([path], pseudonyms).get(str(path), 0)
        except MapwiseError as err:
            missing.append({**entry, "reason": str(err)})
            continue
        if rows:
            objects.append({**entry, "where": where, "rows": rows})
    order = [rev for rev, _ in snapshots]
    hit = {rev for o in objects for rev in o["revisions"]}
    return {"objects": objects, "revisions": [rev for rev in order if rev in hit], "missing": missing}


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except PermissionError:
        folder = path.parent
        os.chmod(folder, stat.S_IMODE(folder.stat().st_mode) | stat.S_IWUSR | stat.S_IXUSR)
        path.unlink()


def purge(report: dict, *, cache: Path, remote: Path | None) -> dict:
    """Delete exactly the objects `report` (from `affected`) lists from the cache and the local remote.

    Returns {"cache": [paths removed], "remote": [paths removed]}. A read-only object is unlinked (its folder made
    writable by its owner if it was not); nothing else is touched. The folder manifests (`.dir`) stay: they hold
    md5s and file names, no personal data, and the files they list that are still there stay restorable.
    """
    roots = {"cache": cache, "remote": remote}
    removed: dict[str, list[str]] = {name: [] for name in _LOCATIONS}
    for obj in report.get("objects", []):
        for name in _LOCATIONS:
            if roots[name] is None:
                continue
            path = object_path(roots[name], obj["md5"], obj.get("hash", "md5"))
            if path.is_file():
                _unlink(path)
                removed[name].append(str(path))
    return removed


def remote_url(repo: Path) -> str | None:
    """The URL of the default remote in `.dvc/config` (`.dvc/config.local` wins), None without one."""
    config = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        config.read([repo / ".dvc" / "config", repo / ".dvc" / "config.local"])
    except configparser.Error as err:
        raise MapwiseError(f"{repo / '.dvc' / 'config'}: not a readable DVC config ({one_line(str(err))})") from None
    default = config.get("core", "remote", fallback=None)
    for section in config.sections():
        match = _REMOTE_SECTION.match(section)
        if match and match.group(1) == default:
            return config.get(section, "url", fallback=None)
    return None


def remote_path(repo: Path) -> Path | None:
    """The default remote's folder if it is local (~ expanded; a relative URL is relative to `.dvc/`).

    None for a cloud URL (s3://, gs://, ssh://, ...: purge those md5s with the cloud's own tools) or no remote.
    """
    url = remote_url(repo)
    if not url or "://" in url:
        return None
    path = Path(url).expanduser()
    return path if path.is_absolute() else Path(os.path.normpath(repo.resolve() / ".dvc" / path))
