"""Registries by short name: preview strategies, tasks, judges, losses, schedules, model sources,
starting points. An unknown name is a one-line :class:`UserError` that names the setting, lists the
known names and suggests the closest one, so a typo in a config fails when it is resolved.

Example::

    STRATEGIES = Registry("strategy", setting="preview.mode")

    @STRATEGIES.register("real", reads=("m", "connector"))
    def real(...): ...

    STRATEGIES.get("reel")  # UserError: preview.mode: unknown strategy 'reel'; known: real (did you mean 'real'?)
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

from lat.core.errors import UserError

T = TypeVar("T")


def known_names(name: object, known: Sequence[str]) -> str:
    """``known: a, b, c`` and, when one is close to ``name``, `` (did you mean 'b'?)``."""
    close = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"known: {', '.join(known) or '(none)'}{hint}"


def unknown_name(setting: str, kind: str, name: object, known: Sequence[str]) -> UserError:
    """The one-line error for a name that is not among ``known`` (with the closest match, if any).

    Args:
        setting: Where the name came from (``preview.mode``, ``--mode``); may be empty.
        kind: What the name names (``strategy``, ``loss``).
        name: The name given.
        known: The valid names, in the order they are listed.
    """
    prefix = f"{setting}: " if setting else ""
    what = f"{kind} " if kind else ""
    return UserError(f"{prefix}unknown {what}{name!r}; {known_names(name, known)}")


class _Lazy:
    """An entry named by ``"module:attribute"``, imported when first used."""

    def __init__(self, target: str):
        self.target = target

    def load(self) -> Any:
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)


class Registry(Generic[T]):
    """Named entries with metadata, registered by decorator or call.

    Args:
        kind: What an entry is, for messages (``strategy``, ``task``).
        setting: The config setting that names an entry (``preview.mode``), for messages.
    """

    def __init__(self, kind: str, setting: str = ""):
        self.kind = kind
        self.setting = setting
        self._entries: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        """Decorator: register the decorated object under ``name`` with ``meta``."""

        def add(obj: T) -> T:
            self.add(name, obj, **meta)
            return obj

        return add

    def add(self, name: str, obj: T, **meta: Any) -> None:
        """Register ``obj`` under ``name``; a name is registered once."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = obj
        self._meta[name] = meta

    def add_lazy(self, name: str, target: str, **meta: Any) -> None:
        """Register ``"module:attribute"`` under ``name``, imported on first :meth:`get`: the name
        and its metadata are known (and a config checked) without importing torch."""
        self.add(name, _Lazy(target), **meta)  # type: ignore[arg-type]

    def get(self, name: str, setting: str | None = None) -> T:
        """The entry named ``name``.

        Raises:
            UserError: Unknown name (names ``setting``, default the registry's, and the known names).
        """
        try:
            entry = self._entries[name]
        except (KeyError, TypeError):
            raise self.unknown(name, setting) from None
        if isinstance(entry, _Lazy):
            entry = self._entries[name] = entry.load()
        return entry

    def check(self, name: str, setting: str | None = None) -> str:
        """``name`` unchanged if it is registered (see :meth:`get`)."""
        self.get(name, setting)
        return name

    def unknown(self, name: object, setting: str | None = None) -> UserError:
        """The error for an unknown ``name``."""
        return unknown_name(self.setting if setting is None else setting, self.kind, name, self.names())

    def meta(self, name: str) -> dict[str, Any]:
        """The metadata ``name`` was registered with (empty for an unknown name)."""
        return self._meta.get(name, {})

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __setitem__(self, name: str, obj: T) -> None:
        """Replace a registered entry (its metadata stays): for tests that stand in an entry."""
        if name not in self._entries:
            raise self.unknown(name)
        self._entries[name] = obj

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) pairs in registration order."""
        return [(name, self.get(name)) for name in self._entries]
