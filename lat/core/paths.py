"""Files shipped inside the package, named ``pkg:RELATIVE`` in configs (``pkg:assets/harmful_eval.jsonl``)."""

from __future__ import annotations

import hashlib
from importlib.resources import files
from pathlib import Path

PKG_PREFIX = "pkg:"


def resolve_path(path: str | Path) -> str | Path:
    """Resolve ``pkg:RELATIVE`` to a file shipped inside the ``lat`` package; other paths as given."""
    if str(path).startswith(PKG_PREFIX):
        return Path(str(files("lat").joinpath(str(path)[len(PKG_PREFIX) :])))
    return path


def file_digest(path: str | Path) -> str:
    """sha256 (hex) of the file ``path`` names (``pkg:`` resolved), read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(resolve_path(path), "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
