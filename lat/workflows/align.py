"""`lat align`: build the aligned seed (once, cached) and report the base and the seed side by side."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from lat.config import Config
from lat.config.identity import seed_report_key
from lat.core.fileio import write_json
from lat.data.records import write_records
from lat.models.loading import load_for_eval
from lat.workflows.check import check_config
from lat.workflows.common import build_evaluator
from lat.workflows.seed import build_seed


def report_seed(cfg: Config) -> tuple[Path, dict]:
    """Build the seed if needed; evaluate the base and the seed, kept in ``<seed>/report.json``
    with what it was measured under (:func:`seed_report_key`) and measured again when that differs.
    Their generations go to ``<seed>/report_samples/{base,seed}.jsonl`` (the records of a run's
    ``samples.jsonl``), so a recipe can be read and re-judged (``lat judge``) without generating
    again.

    Returns:
        (seed folder, ``{"base": metrics, "seed": metrics}``).
    """
    folder = build_seed(check_config(cfg))
    report = folder / "report.json"
    settings = seed_report_key(cfg)
    if report.exists():
        cached = json.loads(report.read_text())
        if set(cached) == {"base", "seed", "settings"} and cached["settings"] == settings:
            return folder, {k: cached[k] for k in ("base", "seed")}
    seed = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, name_or_path=str(folder), adapter_path=None))
    evaluator = build_evaluator(seed)
    out, samples = {}, {}
    for name, model_cfg in (("base", cfg), ("seed", seed)):
        model, tok = load_for_eval(model_cfg.model, model_cfg.run.seed)
        sm, ss = evaluator.safety(model, tok, progress=True)
        um, us = evaluator.utility(model, tok, progress=True)
        out[name], samples[name] = {**sm, **um}, ss + us
    for name, records in samples.items():
        write_records(folder / "report_samples" / f"{name}.jsonl", records)
    write_json(report, {**out, "settings": settings})
    return folder, out
