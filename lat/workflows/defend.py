"""Post-hoc defenses of a fine-tuned model (``defense.name``): applied by the fine-tuning recipe
after ``fit`` on rank 0, before the final divergence measurement, evaluation and save. Each
writes what it did to ``defense.json`` in the run folder and returns its headline numbers for
``metrics.json``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lat.config import Config, ModelConfig
from lat.core.errors import UserError
from lat.core.fileio import write_json
from lat.models.choices import DEFENSES
from lat.models.loading import load_for_eval
from lat.models.safelora import safe_lora


def defend(cfg: Config, model, unaligned: ModelConfig | None, run_dir: Path) -> dict:
    """Apply ``defense.name`` to ``model`` in place; {} for ``none``.

    Raises:
        UserError: The defense needs the unaligned base and none was given.
    """
    fn = DEFENSES.get(cfg.defense.name)
    if fn is None:
        return {}
    if "unaligned base" in DEFENSES.meta(cfg.defense.name)["needs"] and unaligned is None:
        raise UserError(f"defense.name={cfg.defense.name}: needs the unaligned base the seed was aligned from (run it with lat train or lat run)")
    details, metrics = fn(model, cfg, unaligned)
    write_json(run_dir / "defense.json", {"defense": cfg.defense.name, "settings": dataclasses.asdict(cfg.defense), **details})
    return metrics


def safelora(model, cfg: Config, unaligned: ModelConfig) -> tuple[dict, dict]:
    """Safe LoRA (:mod:`lat.models.safelora`) against the unaligned base's weights."""
    base, _ = load_for_eval(unaligned, cfg.align.seed)  # the base the seed was built from
    reports = safe_lora(model, base.state_dict(), cfg.defense.safelora_layers, cfg.defense.safelora_threshold)
    del base
    projected = [r for r in reports if r.projected]
    details = {"layers": [dataclasses.asdict(r) for r in reports]}
    metrics = {
        "defense/safelora_projected": len(projected),
        "defense/safelora_layers": len(reports),
        "defense/safelora_max_projected_cos": max((r.cosine for r in projected if r.cosine is not None), default=None),
    }
    return details, metrics
