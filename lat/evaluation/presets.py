"""Public harmful and over-refusal benchmarks in their published formats (``eval.benchmarks``).

A preset (``lat/configs/benchmark/NAME.yaml``, or the same path under any config folder) says
where a benchmark comes from and how its records read:

============== ===========================================================================
key            meaning
============== ===========================================================================
title          the benchmark's name in tables
source         its default source, an ``hf:`` id (used where the hub is reachable)
format         ``csv``, ``jsonl``, ``json`` or ``hexphi`` (a folder of ``category_N.csv``
               files, one prompt per line, no header)
kind           ``harmful`` (RSR, JSR@k), ``benign`` (over-refusal) or ``split`` (both, told
               apart by ``split_field``: ``harmful_values`` / ``benign_values``)
prompt_field   the request (a list of strings gives its first, as SORRY-Bench's ``turns``)
category_field the category (per-category rates; absent = ``all``)
response_field a harmful opening prefilled for JSR@k (absent = RSR only)
filters        field -> allowed values (HarmBench's ``standard`` behaviours)
categories     ``hexphi``: file number -> category name
hf_fields      settings that differ for the ``hf:`` source (a hub mirror that renamed the
               published columns), applied only when reading from the hub
============== ===========================================================================

``eval.benchmarks`` names a preset (its ``source``) or ``NAME:PATH`` (a local file or folder in
the published format). A file in another format fails with one line naming the missing column.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from omegaconf import OmegaConf

from lat.config.compose import available, find_config
from lat.core.errors import UserError
from lat.core.paths import resolve_path
from lat.core.registry import known_names
from lat.data.records import HF_PREFIX, RecordSet, read_records
from lat.evaluation.prompt_sets import BENIGN, HARMFUL, HarmfulItem, PromptSet, balanced_head

GROUP = "benchmark"
KINDS = (HARMFUL, BENIGN, "split")
FORMATS = ("csv", "jsonl", "json", "hexphi")
HEXPHI_FILE = re.compile(r"^category_(\d+)\.csv$")


@dataclass
class Preset:
    """One benchmark's source and record layout (see the module docstring for each field)."""

    name: str
    title: str = ""
    source: str = ""
    format: str = "csv"
    kind: str = HARMFUL
    prompt_field: str = "prompt"
    category_field: Optional[str] = None
    response_field: Optional[str] = None
    filters: dict = field(default_factory=dict)
    split_field: Optional[str] = None
    harmful_values: list = field(default_factory=list)
    benign_values: list = field(default_factory=list)
    categories: dict = field(default_factory=dict)
    hf_fields: dict = field(default_factory=dict)

    def columns(self) -> list[str]:
        """The fields every record of the published format has."""
        named = [self.prompt_field, self.category_field, self.response_field, self.split_field, *self.filters]
        return list(dict.fromkeys(c for c in named if c))


def load_preset(name: str) -> Preset:
    """The preset ``name`` from the config folders.

    Raises:
        UserError: An unknown name (with the known ones), or a preset file with unknown keys or
            an unknown format or kind.
    """
    known = available(GROUP)
    if name not in known:
        raise UserError(f"eval.benchmarks: unknown benchmark {name!r}; {known_names(name, known)}")
    path = find_config(GROUP, name)
    raw = OmegaConf.to_container(OmegaConf.load(path))
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of preset settings")
    fields = set(Preset.__dataclass_fields__) - {"name"}
    unknown = sorted(set(map(str, raw)) - fields)
    if unknown:
        raise UserError(f"{path}: unknown preset setting {unknown[0]!r}; {known_names(unknown[0], sorted(fields))}")
    preset = Preset(name=name, **{str(k): v for k, v in raw.items()})
    if preset.format not in FORMATS:
        raise UserError(f"{path}: format: unknown format {preset.format!r}; {known_names(preset.format, FORMATS)}")
    if preset.kind not in KINDS:
        raise UserError(f"{path}: kind: unknown kind {preset.kind!r}; {known_names(preset.kind, KINDS)}")
    if preset.kind == "split" and not preset.split_field:
        raise UserError(f"{path}: kind split needs split_field (and harmful_values / benign_values)")
    for name, values in (
        ("harmful_values", preset.harmful_values),
        ("benign_values", preset.benign_values),
        *((f"filters.{k}", v) for k, v in preset.filters.items()),
    ):
        if not isinstance(values, list):
            raise UserError(f"{path}: {name}: expected a list of values, got {values!r}")
    unknown = sorted(set(map(str, preset.hf_fields)) - (fields - {"hf_fields", "source"}))
    if unknown:
        raise UserError(f"{path}: hf_fields: unknown preset setting {unknown[0]!r}")
    return preset


def parse_spec(spec: str) -> tuple[Preset, str]:
    """``NAME`` or ``NAME:PATH`` -> (preset, source): the given path, else the preset's source.

    Raises:
        UserError: Unknown preset; a local path that does not exist.
    """
    name, _, path = str(spec).partition(":")
    preset = load_preset(name.strip())
    if not path:
        if not preset.source:
            raise UserError(f"eval.benchmarks: {name} has no default source; give {name}:PATH (a local copy in the published format)")
        return dataclasses.replace(preset, **preset.hf_fields), preset.source
    if path.startswith(HF_PREFIX):
        return dataclasses.replace(preset, **preset.hf_fields), path
    if not Path(resolve_path(path)).exists():
        raise UserError(f"eval.benchmarks: {spec}: no such file or folder")
    return preset, path


def check_specs(specs: Sequence[str], reserved: Sequence[str] = ()) -> None:
    """Check ``eval.benchmarks`` without reading any data (config time).

    Args:
        reserved: Names a benchmark may not take (the judges', whose rates share the metric
            namespace: ``safety/<judge>/rsr``).

    Raises:
        UserError: Unknown preset, missing local path, a benchmark named twice or after a judge.
    """
    seen: set[str] = set()
    for spec in specs:
        preset, _ = parse_spec(spec)
        if preset.name in seen:
            raise UserError(f"eval.benchmarks: {preset.name} is named twice; its name keys its metrics")
        if preset.name in reserved:
            raise UserError(f"eval.benchmarks: {preset.name} is also a judge's name, and both key metrics (safety/{preset.name}/rsr)")
        seen.add(preset.name)


def _hexphi_records(folder: Path, preset: Preset) -> RecordSet:
    """HEx-PHI's per-category files as records ``{prompt, category}``."""
    if not folder.is_dir():
        raise UserError(f"{folder}: HEx-PHI is a folder of category_N.csv files, not a file")
    files = sorted((p for p in folder.iterdir() if HEXPHI_FILE.match(p.name)), key=lambda p: int(HEXPHI_FILE.match(p.name).group(1)))  # type: ignore[union-attr]
    if not files:
        raise UserError(f"{folder}: no category_N.csv files (HEx-PHI's published layout)")
    records, locations = [], []
    for path in files:
        number = int(HEXPHI_FILE.match(path.name).group(1))  # type: ignore[union-attr]
        category = str(preset.categories.get(number, f"category_{number}"))
        with open(path, encoding="utf-8", newline="") as f:
            for line, row in enumerate(csv.reader(f), 1):
                if row and row[0].strip():
                    records.append({"prompt": row[0], "category": category})
                    locations.append(f"{path.name}: line {line}")
    return RecordSet(str(folder), records, locations)


def _records(preset: Preset, source: str) -> RecordSet:
    if preset.format == "hexphi" and not source.startswith(HF_PREFIX):
        return _hexphi_records(Path(resolve_path(source)), preset)
    return read_records(source, "auto" if source.startswith(HF_PREFIX) else preset.format)


def _check_columns(records: RecordSet, preset: Preset) -> None:
    if preset.format == "hexphi" and not records.source.startswith(HF_PREFIX):
        return
    present = set(records.records[0]) if records.records else set()
    missing = [c for c in preset.columns() if c not in present]
    if missing:
        raise UserError(
            f"{records.source}: not in {preset.title or preset.name}'s format: no column {missing[0]!r} (has: {', '.join(sorted(map(str, present))) or 'none'})"
        )


def _prompt(records: RecordSet, i: int, name: str) -> str:
    value = records.records[i].get(name)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value[0]
    return records.text(i, name)


def load_benchmark(spec: str, max_samples: int | None = None) -> list[PromptSet]:
    """The prompt sets of one ``eval.benchmarks`` entry (two for a ``split`` benchmark).

    Raises:
        UserError: As :func:`parse_spec`; a file in another format (the missing column named); a
            benchmark left with no prompts by its filters.
    """
    preset, source = parse_spec(spec)
    records = _records(preset, source)
    _check_columns(records, preset)
    by_kind: dict[str, list[HarmfulItem]] = {HARMFUL: [], BENIGN: []}
    for i, record in enumerate(records.records):
        if any(str(record.get(k)) not in map(str, allowed) for k, allowed in preset.filters.items()):
            continue
        kind = preset.kind
        if kind == "split":
            value = str(record.get(preset.split_field or ""))
            kind = HARMFUL if value in map(str, preset.harmful_values) else BENIGN if value in map(str, preset.benign_values) else ""
            if not kind:
                continue
        prompt = _prompt(records, i, "prompt" if preset.format == "hexphi" else preset.prompt_field)
        category = str(record.get("category" if preset.format == "hexphi" else preset.category_field or "") or "all")
        response = record.get(preset.response_field) if preset.response_field and kind == HARMFUL else None
        by_kind[kind].append(HarmfulItem(prompt, category, response if isinstance(response, str) and response.strip() else None))
    sets = [PromptSet(preset.name, kind, tuple(balanced_head(items, max_samples))) for kind, items in by_kind.items() if items]
    if not sets:
        raise UserError(f"{source}: no prompts left after the {preset.name} preset's filters {preset.filters}")
    return sets
