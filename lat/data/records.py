"""Record files: read jsonl / json / csv / Hugging Face datasets, write jsonl / json / csv.

A *record* is one JSON object (a ``dict``). Every record remembers where it came from, so a bad
field is reported as ``file: line 7: field 'answer': ...`` and never as a traceback.

The jsonl and json writers produce byte-for-byte what the paper's preprocessing script writes
(jsonl: ``json.dumps(record)`` per line; json: ``json.dump(records, indent=4, ensure_ascii=False)``),
so ``lat preview`` output can replace that script's output in an existing pipeline.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from lat.core.errors import UserError, where
from lat.core.fileio import atomic_write
from lat.core.paths import regular_file, resolve_path
from lat.core.registry import unknown_name

HF_PREFIX = "hf:"


@dataclass
class RecordSet:
    """Records read from one source.

    Attributes:
        source: The file path or ``hf:`` spec the records came from.
        records: The records, in file order.
        locations: One label per record for messages (``"line 7"``, ``"record 3"``, ``"row 2"``).
    """

    source: str
    records: list[dict]
    locations: list[str]

    def __len__(self) -> int:
        return len(self.records)

    def text(self, i: int, field: str, allow_empty: bool = False) -> str:
        """Return field ``field`` of record ``i`` as a string, or raise a one-line UserError.

        Args:
            i: 0-based record index.
            field: The field name.
            allow_empty: Accept an empty or whitespace-only string.
        """
        record = self.records[i]
        if field not in record:
            raise UserError(f"{where(self.source, self.locations[i], field)}: missing")
        value = record[field]
        if not isinstance(value, str):
            raise UserError(f"{where(self.source, self.locations[i], field)}: expected a string, got {type(value).__name__}")
        if not allow_empty and not value.strip():
            raise UserError(f"{where(self.source, self.locations[i], field)}: empty")
        return value

    def select(self, idx) -> RecordSet:
        """The records at indices ``idx`` (locations kept for messages)."""
        return RecordSet(self.source, [self.records[i] for i in idx], [self.locations[i] for i in idx])

    def head(self, n: int | None) -> RecordSet:
        """The first ``n`` records (all when ``n`` is None)."""
        return self if n is None else self.select(range(min(n, len(self.records))))

    def texts(self, field: str, allow_empty: bool = False) -> list[str]:
        """Field ``field`` of every record, validated as in :meth:`text`."""
        return [self.text(i, field, allow_empty) for i in range(len(self.records))]


def _json_limit(e: ValueError | RecursionError) -> str:
    """What a JSON value the decoder refuses without a position ran into."""
    return "nested too deeply" if isinstance(e, RecursionError) else str(e).split(":")[0].strip()


def _read_jsonl(path: Path) -> RecordSet:
    records, locations = [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue  # blank lines are skipped, as in the reference script
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{where(path, lineno)}: invalid JSON ({e.msg} at column {e.colno})") from None
            except (ValueError, RecursionError) as e:  # an integer too long to convert, arrays nested too deep
                raise UserError(f"{where(path, lineno)}: invalid JSON ({_json_limit(e)})") from None
            if not isinstance(obj, dict):
                raise UserError(f"{where(path, lineno)}: expected a JSON object, got {type(obj).__name__}")
            records.append(obj)
            locations.append(f"line {lineno}")
    return RecordSet(str(path), records, locations)


def _read_json(path: Path) -> RecordSet:
    with open(path, encoding="utf-8") as f:
        text = f.read()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{where(path, e.lineno)}: invalid JSON ({e.msg} at column {e.colno})") from None
        except (ValueError, RecursionError) as e:
            raise UserError(f"{path}: invalid JSON ({_json_limit(e)})") from None
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON list of objects, got {type(data).__name__}")
    for i, obj in enumerate(data, 1):
        if not isinstance(obj, dict):
            raise UserError(f"{where(path, f'record {i}')}: expected a JSON object, got {type(obj).__name__}")
    return RecordSet(str(path), data, [f"record {i}" for i in range(1, len(data) + 1)])


def _read_csv(path: Path) -> RecordSet:
    with open(path, encoding="utf-8", newline="") as f:
        try:
            rows = list(csv.DictReader(f))
        except csv.Error as e:
            raise UserError(f"{path}: invalid CSV ({e})") from None
    for i, row in enumerate(rows, 1):
        if None in row:
            raise UserError(f"{where(path, f'row {i}')}: more values than header columns")
    return RecordSet(str(path), rows, [f"row {i}" for i in range(1, len(rows) + 1)])


def _read_hf(spec: str) -> RecordSet:
    """Read ``hf:NAME[:CONFIG][@SPLIT]`` (or ``hf:/local/dir@SPLIT``) with the ``datasets`` library."""
    body = spec[len(HF_PREFIX) :]
    name, _, split = body.partition("@")
    name, _, config = name.partition(":")
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a declared dependency
        raise UserError(f"{spec}: reading Hugging Face datasets needs the 'datasets' package") from None
    try:
        if Path(name).is_dir() and (Path(name) / "dataset_info.json").exists():
            ds = datasets.load_from_disk(name)
            ds = ds[split or "train"] if isinstance(ds, datasets.DatasetDict) else ds
        else:
            ds = datasets.load_dataset(name, config or None, split=split or "train")
    except Exception as e:  # noqa: BLE001 - any parse failure is reported as the user's file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{spec}: cannot load Hugging Face dataset ({first})") from None
    records = [dict(r) for r in ds]
    return RecordSet(spec, records, [f"record {i}" for i in range(1, len(records) + 1)])


READERS: dict[str, Callable[[Path], RecordSet]] = {"jsonl": _read_jsonl, "json": _read_json, "csv": _read_csv}
EXTENSIONS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv"}


def infer_format(path: str | Path) -> str:
    """The record format of ``path`` from its extension (``hf:`` specs are ``"hf"``)."""
    if str(path).startswith(HF_PREFIX):
        return "hf"
    fmt = EXTENSIONS.get(Path(path).suffix.lower())
    if fmt is None:
        raise UserError(f"{path}: cannot tell the format from the extension; give one of {sorted(READERS)}")
    return fmt


def read_records(path: str | Path, fmt: str = "auto") -> RecordSet:
    """Read records from a file or a Hugging Face dataset.

    Args:
        path: A ``.jsonl``/``.json``/``.csv`` file, ``pkg:RELATIVE`` (shipped with lat), or
            ``hf:NAME[:CONFIG][@SPLIT]``.
        fmt: ``"auto"`` (from the extension), ``"jsonl"``, ``"json"``, ``"csv"`` or ``"hf"``.

    Returns:
        The records with their locations.

    Raises:
        UserError: Unknown format, missing file, or malformed content (one line naming the place).
    """
    path = resolve_path(path)
    fmt = infer_format(path) if fmt == "auto" else fmt
    if fmt == "hf":
        return _read_hf(str(path))
    if fmt not in READERS:
        raise unknown_name("", "record format", fmt, [*sorted(READERS), "hf"])
    p = regular_file(path)
    try:
        records = READERS[fmt](p)
    except UnicodeDecodeError as e:
        raise UserError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not len(records):
        raise UserError(f"{p}: no records (empty file)")
    return records


def _write_jsonl(f, records: Sequence[dict]) -> None:
    for record in records:
        f.write(json.dumps(record) + "\n")


def _write_json(f, records: Sequence[dict]) -> None:
    json.dump(list(records), f, ensure_ascii=False, indent=4)


def _write_csv(f, records: Sequence[dict]) -> None:
    fields = list(dict.fromkeys(k for r in records for k in r))
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    writer.writerows(records)


WRITERS = {"jsonl": _write_jsonl, "json": _write_json, "csv": _write_csv}


def write_records(path: str | Path, records: Sequence[dict], fmt: str = "auto") -> None:
    """Write records atomically (temporary file, then rename).

    Args:
        path: Destination file.
        records: The records.
        fmt: ``"auto"`` (from the extension), ``"jsonl"``, ``"json"`` or ``"csv"``.
    """
    fmt = infer_format(path) if fmt == "auto" else fmt
    if fmt not in WRITERS:
        raise unknown_name("", "output format", fmt, sorted(WRITERS))
    with atomic_write(path) as f:
        WRITERS[fmt](f, records)
