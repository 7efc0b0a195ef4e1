"""Cached folders that are complete or absent: built aside, marked last, moved into place.

A folder counts as built only when its marker (written after every other file) names the same
identity and every file still has its recorded size; anything else is rebuilt. Builds hold a
lock so two processes never build the same folder at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from lat.core.fileio import write_json
from lat.core.paths import file_digest

try:  # POSIX only; elsewhere builds are simply not serialised.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

MARKER = "lat_complete.json"


def cache_root() -> Path:
    """The lat cache: ``$LAT_CACHE``, else ``$XDG_CACHE_HOME/lat``, else ``~/.cache/lat``."""
    if os.environ.get("LAT_CACHE"):
        return Path(os.environ["LAT_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "lat"
    return Path.home() / ".cache" / "lat"


def is_complete(folder: Path, identity: dict, deep: bool = False, required: Sequence[str] = ()) -> bool:
    """Whether ``folder`` was finished for ``identity``, holds ``required`` files, and no file
    was truncated (or, with ``deep``, changed: where the marker records digests) since.
    """
    try:
        marker = json.loads((folder / MARKER).read_text())
        # a marker written before identities had their own key held them at its top level
        found = marker["identity"] if "identity" in marker else {k: v for k, v in marker.items() if k != "files"}
        if found != identity or not set(required) <= set(marker["files"]):
            return False
        for name, record in marker["files"].items():
            size, sha = (record, None) if isinstance(record, int) else (record["size"], record["sha256"])
            path = folder / name
            if path.stat().st_size != size or (deep and sha is not None and file_digest(path) != sha):
                return False
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return True


def write_marker(folder: Path, identity: dict, digests: bool = False) -> None:
    """Mark ``folder`` finished for ``identity``: every file's size (and sha256 with ``digests``).
    Written last, after every other file of the folder."""
    files: dict[str, object] = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != MARKER:
            name, size = p.relative_to(folder).as_posix(), p.stat().st_size
            files[name] = {"size": size, "sha256": file_digest(p)} if digests else size
    (folder / MARKER).write_text(json.dumps({"identity": identity, "files": files}, indent=2) + "\n")


@contextlib.contextmanager
def build_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (released on exit)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def ensure_folder(folder: Path, identity: dict, build: Callable[[Path], None], what: str) -> Path:
    """Return ``folder``, building it with ``build(tmp_dir)`` first unless it is complete.

    Args:
        folder: Final location.
        identity: What the folder must have been built from (compared with its marker).
        build: Writes every file of the folder into the given temporary directory.
        what: Name for the one-line message printed when (re)building.
    """
    if is_complete(folder, identity):
        return folder
    with build_lock(folder.parent / f"{folder.name}.lock"):
        if is_complete(folder, identity):
            return folder
        for stale in folder.parent.glob(f".{folder.name}.*"):  # left by a killed build
            shutil.rmtree(stale, ignore_errors=True)
        reason = "missing" if not folder.exists() else "incomplete or outdated"
        print(f"lat: building {what} at {folder} ({reason})", file=sys.stderr)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            build(tmp)
            write_marker(tmp, identity)
            if folder.exists():
                shutil.rmtree(folder)
            tmp.rename(folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def in_seed_cache(path: str | Path) -> bool:
    """Whether ``path`` is an aligned seed built into lat's cache (``$LAT_CACHE/seeds/...``)."""
    path = Path(path)
    return path.is_absolute() and (cache_root() / "seeds") in path.parents


def cache_file(kind: str, key: object) -> Path:
    """Where :func:`cached_json` keeps the value of ``key``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return cache_root() / kind / f"{digest}.json"


def cached_json(kind: str, key: object, compute: Callable[[], object]):
    """``compute()`` once per ``key`` (any JSON-serialisable value), kept in
    ``$LAT_CACHE/<kind>/<hash>.json`` and read back afterwards (written atomically)."""
    path = cache_file(kind, key)
    if path.exists():
        return json.loads(path.read_text())
    value = compute()
    write_json(path, value)
    return value
