"""Files shipped inside the package, named ``pkg:RELATIVE`` in configs (``pkg:assets/harmful_eval.jsonl``)."""

from __future__ import annotations

import hashlib
from importlib.resources import files
from pathlib import Path

from lat.core.errors import UserError

PKG_PREFIX = "pkg:"
NAME_MAX = 255
"""Longest folder name, in bytes, that common file systems take."""


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


def folder_name(name: str, setting: str) -> str:
    """``name`` unchanged if it is one folder name: not empty, not ``.`` or ``..``, no ``/``, ``\\``
    or NUL, at most :data:`NAME_MAX` bytes, so that what is written under it stays in its parent.

    Raises:
        UserError: Otherwise, naming ``setting``.
    """
    if name in ("", ".", "..") or any(c in name for c in "/\\\x00"):
        raise UserError(f"{setting}: {name!r} is not a single folder name (no '/', not '.' or '..')")
    if len(name.encode()) > NAME_MAX:
        raise UserError(f"{setting}: {len(name.encode())} bytes long; a folder name holds at most {NAME_MAX}")
    return name


def parent_folder(path: str | Path, setting: str) -> Path:
    """``path`` as a folder to create things in: refused when it exists and is not a folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{setting}: {path} exists and is not a folder")
    return path


def local_path(name: str) -> bool:
    """Whether ``name`` (a model or tokenizer) is written as a file-system path, not a hub id:
    absolute, or starting with ``.`` or ``~`` (hub ids never do)."""
    return Path(name).is_absolute() or name.startswith((".", "~"))


def check_local_folder(name: str, label: str) -> None:
    """Refuse a model or tokenizer ``name`` written as a path that does not exist (before the
    hub client calls it an invalid repo id).

    Raises:
        UserError: ``<label>: no such folder``.
    """
    if local_path(name) and not Path(name).expanduser().exists():
        raise UserError(f"{label}: no such folder")


def regular_file(path: str | Path, missing: str = "no such file") -> Path:
    """``path`` if it is a regular file to read.

    Raises:
        UserError: It is missing (``missing`` says so), a directory, or another kind of file (a
            FIFO, a device), each in one line naming it.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not a file")
    if path.exists() and not path.is_file():
        raise UserError(f"{path}: is not a regular file (a FIFO, socket or device)")
    if not path.exists():
        raise UserError(f"{path}: {missing}")
    return path
