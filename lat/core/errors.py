"""User-facing errors.

A :class:`UserError` is a mistake in the user's input (a data file, a config key, a CLI
argument). The CLI prints it as one line, ``lat: <message>``, and exits with code 2, without a
traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path

_LINE_BREAKS = str.maketrans({c: repr(c)[1:-1] for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"})
"""Characters that end a line (``str.splitlines``), each to its escape (``\\n``)."""


class UserError(Exception):
    """A mistake in the user's input; reported in one line, exit code 2.

    The message is kept to one line: a line break in it (from a value the user gave, say
    ``experiment=<newline>``) is written as its escape.
    """

    def __init__(self, message: str):
        super().__init__(str(message).translate(_LINE_BREAKS))


def where(path: str | Path | None = None, record: int | str | None = None, field: str | None = None) -> str:
    """Format the location of a problem for a one-line message.

    Args:
        path: The file the problem is in.
        record: A 1-based line number (int) or a record label (str, e.g. ``"record 3"``).
        field: The field of that record.

    Returns:
        For example ``"data/train.jsonl: line 3: field 'answer'"``.
    """
    parts = []
    if path is not None:
        parts.append(str(path))
    if record is not None:
        parts.append(f"line {record}" if isinstance(record, int) else str(record))
    if field is not None:
        parts.append(f"field {field!r}")
    return ": ".join(parts)


class RunStopped(Exception):
    """A run that stopped before its end for a reason the user must read (a signal, a loss that
    became NaN or inf). Reported in one line without a traceback; exit code :attr:`code`.

    Args:
        message: What happened and where the last checkpoint is.
        code: The process exit code (``128 + signal`` for a signal, 1 otherwise).
    """

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code
