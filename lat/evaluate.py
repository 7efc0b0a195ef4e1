"""`lat eval`: evaluate a base model, a seed, or base + adapter without training.

Writes the same files as a training run: ``config.yaml``, ``environment.json``,
``metrics.json`` (flat metrics plus an ``evals`` list) and ``samples.jsonl`` (one record per
generation: prompt, prefill prefix, response, judge label and score).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning as L

from lat.config import Config
from lat.evaluation.callbacks import Evaluator, record_eval
from lat.models.loading import load_model_and_tokenizer, merge_start_adapter
from lat.rundir import open_run_dir


@dataclass
class EvalResult:
    """Attributes: run folder and the flat metrics of this evaluation."""

    run_dir: Path
    metrics: dict


def load_for_eval(cfg: Config):
    """The base model with ``model.adapter_path`` merged in (if set), in eval mode, and its tokenizer."""
    model, tok = load_model_and_tokenizer(cfg.model, cfg.run.seed)
    if cfg.model.adapter_path:
        model = merge_start_adapter(model, cfg.model.adapter_path)
    return model.eval(), tok


def format_metrics(metrics: dict) -> str:
    """A two-column markdown table of the headline metrics."""
    return format_comparison({"value": metrics})


def format_comparison(columns: dict[str, dict]) -> str:
    """A markdown table of the headline metrics, one column per model."""
    names = list(columns)
    keys = [k for k in dict.fromkeys(k for m in columns.values() for k in m) if k.count("/") == 1 and not k.endswith("/n")]
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for k in keys:
        cells = [columns[n].get(k) for n in names]
        lines.append(f"| {k} | " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in cells) + " |")
    return "\n".join(lines)


def evaluate(cfg: Config, progress: bool = True) -> EvalResult:
    """Run the configured safety and utility evaluations once and record them."""
    run_dir = open_run_dir(cfg)
    L.seed_everything(cfg.run.seed, verbose=False)
    evaluator = Evaluator(cfg)
    model, tok = load_for_eval(cfg)
    sm, ss = evaluator.safety(model, tok, progress)
    um, us = evaluator.utility(model, tok, progress)
    metrics = {**sm, **um}
    record_eval(run_dir, metrics, ss + us, None, None)
    return EvalResult(run_dir, metrics)
