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
from lat.evaluation.metric_names import sample_key, sample_outcome

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


REJUDGED = "rejudged.jsonl"
"""A run folder's re-judged samples (``lat judge RUN/samples.jsonl --out RUN/rejudged.jsonl``):
their ``judge/<name>`` labels join the run's rates as ``safety/<name>/...`` and
``overrefusal/<name>/rate``; a judge the run already used is judged again under the same key, and
its re-judged outcomes and rate replace the recorded ones."""


def last_evaluation_rows(path: Path) -> list[dict]:
    """The records of the last evaluation (highest ``step``; of those, the ones a post-hoc defense's
    evaluation marked ``after``) in a samples-like jsonl file.

    Raises:
        UserError: A line that is not a JSON object with a ``metric``, or a non-integer step.
    """
    if not path.exists():
        return []
    rows: list[dict] = []
    for n, line in enumerate(_read_text(path).splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except ValueError:
                raise UserError(f"{path}: line {n}: not valid JSON") from None
            if not isinstance(row, dict) or "metric" not in row:
                raise UserError(f"{path}: line {n}: expected an object with a 'metric' field")
            if not isinstance(row.get("step", 0), (int, type(None))) or isinstance(row.get("step"), bool):
                raise UserError(f"{path}: line {n}: field 'step': expected an integer")
            rows.append(row)
    steps = [r["step"] if r.get("step") is not None else -1 for r in rows]
    last = max(steps, default=-1)
    final = [r for r, step in zip(rows, steps) if step == last]
    defended = [r for r in final if r.get("after")]  # a post-hoc defense's evaluation of the same step
    return defended or final


def _item(r: dict) -> str:
    return f"{r.get('prompt', '')}\x00{r.get('prefix', '')}"


def _add(out: dict[str, dict[str, float]], row: dict, judge: str, label: str) -> None:
    key, outcome = sample_key({**row, "label": label}, judge), sample_outcome(row, label)
    if key is not None and outcome is not None:
        out.setdefault(key, {})[_item(row)] = outcome


def sample_outcomes(path: Path) -> dict[str, dict[str, float]]:
    """Per-prompt binary outcomes of a run's last evaluation in ``samples.jsonl``.

    Safety rows give ``safety/<rsr|jsr@k>`` and ``safety/<judge>/<rsr|jsr@k>`` for extra judges
    (1 = judged safe), over-refusal rows ``overrefusal/rate`` (1 = refused), a benchmark's rows
    its name after the group (:func:`lat.evaluation.metric_names.sample_key`); unjudged rows are
    left out, as in the rate. Utility rows with a ``correct`` field give ``<metric>_acc``.
    """
    out: dict[str, dict[str, float]] = {}
    for r in last_evaluation_rows(path / "samples.jsonl"):
        if "label" in r:
            _add(out, r, "", r["label"])
            for name, label in r.items():
                if name.startswith("label_"):
                    _add(out, r, name[6:], label)
        elif "correct" in r:
            out.setdefault(f"{r['metric']}_acc", {})[_item(r)] = float(bool(r["correct"]))
            if "correct_last_number" in r:
                out.setdefault(f"{r['metric']}_last_number_acc", {})[_item(r)] = float(bool(r["correct_last_number"]))
    return out


def rejudged_outcomes(path: Path) -> dict[str, dict[str, float]]:
    """Per-prompt outcomes of a run folder's ``rejudged.jsonl``: ``safety/<name>/...`` and
    ``overrefusal/<name>/rate`` from its ``judge/<name>`` labels (empty without the file)."""
    out: dict[str, dict[str, float]] = {}
    for r in last_evaluation_rows(path / REJUDGED):
        for name, label in r.items():
            if name.startswith("judge/"):
                _add(out, r, name[6:], label)
    return out


def merged_outcomes(recorded: dict[str, dict[str, float]], rejudged: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """``recorded`` with the re-judged outcomes laid over it, prompt by prompt."""
    out = {key: dict(per_prompt) for key, per_prompt in recorded.items()}
    for key, per_prompt in rejudged.items():
        out.setdefault(key, {}).update(per_prompt)
    return out


def prompt_outcomes(path: Path) -> dict[str, dict[str, float]]:
    """Per-prompt binary outcomes of a run's last evaluation: :func:`sample_outcomes`, with the
    re-judged ones of :func:`rejudged_outcomes` laid over them."""
    return merged_outcomes(sample_outcomes(path), rejudged_outcomes(path))


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
    rejudged = rejudged_outcomes(path)
    outcomes = merged_outcomes(sample_outcomes(path), rejudged)
    for key, per_prompt in outcomes.items():  # re-judged rates, and rates the metrics lack
        if (key in rejudged or key not in metrics) and per_prompt:
            metrics[key] = sum(per_prompt.values()) / len(per_prompt)
    return Run(path, config, metrics, "global_step" in raw, {k: v for k, v in kl.items() if v}, outcomes)


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
