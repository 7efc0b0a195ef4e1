"""Reading run folders: a finished run's config, metrics, divergence curves and per-prompt outcomes.

A run folder is any folder with ``config.yaml`` and ``metrics.json`` (``lat train`` runs, sweep
points, the method and seed folders of ``lat run``); :mod:`lat.runs.folder` writes them.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import yaml

from lat.config.identity import flatten
from lat.core.errors import UserError
from lat.data.preview import strategy_params

KL_POSITIONS = (1, 2, 3)
"""Answer positions whose last KL a run's metrics carry as ``kl/pos_XX``."""


def _read_text(path: Path) -> str:
    """The text of a run file.

    Raises:
        UserError: It cannot be read (a directory, no permission) or is not UTF-8, naming it.
    """
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def divergence_history(run_dir: Path, probe: str, metric: str = "kl") -> dict[int, dict[int, float]]:
    """step -> {position: value} for every measurement of ``probe`` in ``divergence.csv``."""
    path = Path(run_dir) / "divergence.csv"
    out: dict[int, dict[int, float]] = {}
    if not path.exists():
        return out
    with io.StringIO(_read_text(path), newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("probe", "step", "position", metric) if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: line 1: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        for row in reader:
            if row["probe"] == probe and row[metric] not in ("", None):
                try:
                    out.setdefault(int(row["step"]), {})[int(row["position"])] = float(row[metric])
                except (TypeError, ValueError):
                    raise UserError(f"{path}: line {reader.line_num}: step, position and {metric} must be numbers") from None
    return out


def final_divergence(run_dir: Path, probe: str) -> dict[int, float]:
    """position -> KL at the last recorded step of ``probe`` in ``divergence.csv`` (empty if none)."""
    history = divergence_history(run_dir, probe)
    return history[max(history)] if history else {}


@dataclass
class Run:
    """One finished run.

    Attributes:
        path: Its folder.
        config: Flat dotted config (``preview.m`` -> 6), preview fields its strategy ignores removed.
        metrics: Scalar metrics from ``metrics.json`` plus ``kl/pos_XX`` at the last measurement.
        trained: Whether it is a fine-tuning run (False: an evaluation of an unchanged model).
        kl: probe -> {position: KL} at the last measurement.
    """

    path: Path
    config: dict
    metrics: dict
    trained: bool
    kl: dict[str, dict[int, float]] = field(default_factory=dict)
    outcomes: dict[str, dict[str, float]] = field(default_factory=dict)
    """metric -> {prompt (and prefill prefix): 1.0 safe / correct, 0.0 not}, last evaluation."""


def prompt_outcomes(path: Path) -> dict[str, dict[str, float]]:
    """Per-prompt binary outcomes of a run's last evaluation, from ``samples.jsonl``.

    Safety rows give ``safety/<rsr|jsr@k>`` and ``safety/<judge>/<rsr|jsr@k>`` for extra judges
    (1 = judged safe; unjudged rows are left out, as in the rate); utility rows with a
    ``correct`` field give ``<metric>_acc``.
    """
    samples = path / "samples.jsonl"
    if not samples.exists():
        return {}
    rows: list[dict] = []
    for n, line in enumerate(_read_text(samples).splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except ValueError:
                raise UserError(f"{samples}: line {n}: not valid JSON") from None
            if not isinstance(row, dict) or "metric" not in row:
                raise UserError(f"{samples}: line {n}: expected an object with a 'metric' field")
            if not isinstance(row.get("step", 0), (int, type(None))) or isinstance(row.get("step"), bool):
                raise UserError(f"{samples}: line {n}: field 'step': expected an integer")
            rows.append(row)
    steps: list[int] = [r["step"] if r.get("step") is not None else -1 for r in rows]
    last = max(steps, default=-1)
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        if (r.get("step") if r.get("step") is not None else -1) != last:
            continue
        item = f"{r.get('prompt', '')}\x00{r.get('prefix', '')}"
        if "label" in r:
            judged = {"": r["label"], **{f"{k[6:]}/": v for k, v in r.items() if k.startswith("label_")}}
            for judge, label in judged.items():
                if label != "unjudged":
                    out.setdefault(f"safety/{judge}{r['metric']}", {})[item] = float(label == "safe")
        elif "correct" in r:
            out.setdefault(f"{r['metric']}_acc", {})[item] = float(bool(r["correct"]))
            if "correct_last_number" in r:
                out.setdefault(f"{r['metric']}_last_number_acc", {})[item] = float(bool(r["correct_last_number"]))
    return out


def load_run(path: Path) -> Run:
    """Read a run folder (``config.yaml``, ``metrics.json``, ``divergence.csv``)."""
    config_path, metrics_path = path / "config.yaml", path / "metrics.json"
    try:
        nested = yaml.safe_load(_read_text(config_path)) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise UserError(f"{config_path}: invalid YAML{at} ({getattr(e, 'problem', None) or type(e).__name__})") from None
    try:
        raw = json.loads(_read_text(metrics_path))
    except json.JSONDecodeError as e:
        raise UserError(f"{metrics_path}: line {e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(nested, dict):
        raise UserError(f"{config_path}: expected a mapping of settings, got {type(nested).__name__}")
    if not isinstance(raw, dict):
        raise UserError(f"{metrics_path}: expected a JSON object, got {type(raw).__name__}")
    if isinstance(nested.get("preview"), dict):
        nested["preview"] = strategy_params(nested["preview"])
    config = flatten(nested)
    probes = config.get("data.probes") or []
    if not isinstance(probes, list) or not all(isinstance(p, dict) and isinstance(p.get("name"), str) for p in probes):
        raise UserError(f"{config_path}: data.probes: expected a list of probe sets, each with a name")
    kl = {p["name"]: final_divergence(path, p["name"]) for p in probes}
    metrics = {k: v for k, v in raw.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    first = next((c for c in kl.values() if c), {})
    metrics.update({f"kl/pos_{p:02d}": first[p] for p in KL_POSITIONS if p in first})
    return Run(path, config, metrics, "global_step" in raw, {k: v for k, v in kl.items() if v}, prompt_outcomes(path))


def find_runs(paths: Sequence[Path]) -> list[Run]:
    """Every finished run at or below ``paths`` (sorted by path; duplicates once).

    Raises:
        UserError: A path that does not exist, or no finished run at all.
    """
    found: dict[Path, None] = {}
    for path in paths:
        if not path.exists():
            raise UserError(f"{path}: no such run folder")
        candidates = [path / "metrics.json"] if (path / "metrics.json").exists() else sorted(path.rglob("metrics.json"))
        for m in candidates:
            if (m.parent / "config.yaml").exists():
                found[m.parent.resolve()] = None
    if not found:
        raise UserError(f"{', '.join(map(str, paths))}: no finished runs (folders with config.yaml and metrics.json)")
    return [load_run(p) for p in sorted(found)]
