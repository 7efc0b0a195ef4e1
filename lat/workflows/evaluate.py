"""`lat eval`: evaluate a base model, a seed, or base + adapter without training.

Writes the same files as a training run: ``config.yaml``, ``environment.json``,
``metrics.json`` (flat metrics plus an ``evals`` list) and ``samples.jsonl`` (one record per
generation: prompt, prefill prefix, response, judge label and score).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import lightning as L

import lat
from lat.config import Config
from lat.config.identity import evaluation_key
from lat.core.cache import cached_json
from lat.evaluation.evaluator import Evaluator
from lat.models.loading import load_for_eval
from lat.runs.folder import record_eval, run_folder
from lat.workflows.check import check_config
from lat.workflows.common import build_evaluator
from lat.workflows.start import starting_point


@dataclass
class EvalResult:
    """Attributes: run folder and the flat metrics of this evaluation."""

    run_dir: Path
    metrics: dict


def format_metrics(metrics: dict) -> str:
    """A two-column markdown table of the headline metrics."""
    return format_comparison({"value": metrics})


HEADLINE = re.compile(r"^[^/]+/[^/]+$|^(safety|overrefusal)/[^/]+/(rsr|jsr@\d+|rate)$")
"""Headline metric names: ``group/metric`` (``safety/rsr``, ``overrefusal/rate``,
``utility/gsm8k_acc`` ...) and an extra judge's or a benchmark's rates (``safety/embedding/rsr``,
``overrefusal/xstest/rate``), not per-category or bookkeeping ones."""


def format_comparison(columns: dict[str, dict]) -> str:
    """A markdown table of the headline metrics, one column per model."""
    names = list(columns)
    keys = [k for k in dict.fromkeys(k for m in columns.values() for k in m) if HEADLINE.match(k) and not k.endswith("/n")]
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for k in keys:
        cells = [columns[n].get(k) for n in names]
        lines.append(f"| {k} | " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in cells) + " |")
    return "\n".join(lines)


def cache_key(cfg: Config, ev: Evaluator) -> list | None:
    """The key of an evaluation by ``ev`` (:func:`lat.config.identity.evaluation_key`)."""
    items = [(s.name, s.kind, [(i.prompt, i.category, i.response) for i in s.items]) for s in ev.sets]
    return evaluation_key(cfg, items, ev.utility_records.records if ev.utility_records is not None else None, ev.autocast, _evaluation_code_digest())


def _evaluation_code_digest() -> str:
    """sha256 of the code and judge data an evaluation runs (a change invalidates cached results)."""
    pkg = Path(lat.__file__).parent
    files = (
        sorted((pkg / "evaluation").rglob("*.py"))
        + sorted((pkg / "assets").glob("judge_*.jsonl"))
        + [pkg / "data" / "chat.py", pkg / "data" / "metrics.py", pkg / "core" / "refusals.py", pkg / "models" / "merging.py"]
    )
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.read_bytes())
    return digest.hexdigest()


def evaluate(cfg: Config, progress: bool = True, cache: bool = False) -> EvalResult:
    """Run the configured safety and utility evaluations once and record them.

    Args:
        cache: Keep the result under ``$LAT_CACHE/evaluations`` and reuse it for the same model
            folder and settings (:func:`evaluation_key`), so experiments that share an aligned
            seed evaluate it once. Decoding is greedy, so a reused result is the one a new
            evaluation would give.

    The model is the one ``train.start_from`` names (``seed``: the aligned seed, built if
    needed), as for ``lat train``, so a seed evaluation sits beside the runs fine-tuned from it.
    """
    cfg = starting_point(check_config(cfg))
    with run_folder(cfg) as run_dir:
        return _evaluate(cfg, run_dir, progress, cache)


def _evaluate(cfg: Config, run_dir: Path, progress: bool, cache: bool) -> EvalResult:
    evaluator = build_evaluator(cfg)
    key = cache_key(cfg, evaluator) if cache else None

    def compute() -> dict:
        L.seed_everything(cfg.run.seed, verbose=False)
        model, tok = load_for_eval(cfg.model, cfg.run.seed)
        sm, ss = evaluator.safety(model, tok, progress)
        um, us = evaluator.utility(model, tok, progress)
        return {"metrics": {**sm, **um}, "samples": ss + us}

    if key is None:
        result = compute()
    else:
        result = cached_json("evaluations", key, compute)
    record_eval(run_dir, result["metrics"], result["samples"], None, None)
    return EvalResult(run_dir, result["metrics"])
