"""Post-hoc defenses of a fine-tuned model (``defense.name``): applied by the fine-tuning recipe
after ``fit`` on rank 0, before the final divergence measurement, evaluation and save. Each
writes what it did to ``defense.json`` in the run folder and returns its headline numbers for
``metrics.json``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from lat.config import Config, PreviewConfig
from lat.core.errors import UserError
from lat.core.fileio import write_json
from lat.data.chat import collate, encode
from lat.data.tasks import build_examples, get_task, task_system
from lat.models.antidote import antidote as prune
from lat.models.choices import DEFENSES
from lat.models.loading import load_for_eval
from lat.models.safelora import safe_lora
from lat.workflows.poison import compliant_pairs


def defend(cfg: Config, model, tokenizer, base: Config | None, run_dir: Path) -> dict:
    """Apply ``defense.name`` to ``model`` in place; {} for ``none``.

    Args:
        cfg: The run's config.
        model: The fine-tuned peft model.
        tokenizer: Its tokenizer.
        base: The run's config with ``model`` still the unaligned base the seed was built from.
        run_dir: Where ``defense.json`` goes.

    Raises:
        UserError: The defense needs the unaligned base and none was given.
    """
    fn = DEFENSES.get(cfg.defense.name)
    if fn is None:
        return {}
    if "unaligned base" in DEFENSES.meta(cfg.defense.name)["needs"] and base is None:
        raise UserError(f"defense.name={cfg.defense.name}: needs the unaligned base the seed was aligned from (run it with lat train or lat run)")
    details, metrics = fn(model, tokenizer, cfg, base)
    write_json(run_dir / "defense.json", {"defense": cfg.defense.name, "settings": dataclasses.asdict(cfg.defense), **details})
    return metrics


def safelora(model, tokenizer, cfg: Config, base: Config) -> tuple[dict, dict]:
    """Safe LoRA (:mod:`lat.models.safelora`) against the unaligned base's weights."""
    unaligned, _ = load_for_eval(base.model, cfg.align.seed)  # the base the seed was built from
    reports = safe_lora(model, unaligned.state_dict(), cfg.defense.safelora_layers, cfg.defense.safelora_threshold)
    del unaligned
    projected = [r for r in reports if r.projected]
    details = {"layers": [dataclasses.asdict(r) for r in reports]}
    metrics = {
        "defense/safelora_projected": len(projected),
        "defense/safelora_layers": len(reports),
        "defense/safelora_max_projected_cos": max((r.cosine for r in projected if r.cosine is not None), default=None),
    }
    return details, metrics


def calibration_batches(cfg: Config, base: Config, tokenizer) -> list[dict[str, torch.Tensor]]:
    """Antidote's calibration batches: the first ``defense.antidote_samples`` harmful requests of
    ``defense.antidote_calibration_path`` that the unaligned base answers, each with that answer, in
    the training format (the task's system prompt, no preview)."""
    d = cfg.defense
    if not d.antidote_calibration_path:
        raise UserError("defense.name=antidote: needs harmful calibration data; set defense.antidote_calibration_path")
    pairs = compliant_pairs(base, d.antidote_calibration_path, "defense.antidote_calibration_path").head(d.antidote_samples)
    system = task_system(get_task(cfg.data.task), cfg.data.system_prompt) or ""
    examples = build_examples(pairs, get_task("instruction"), PreviewConfig(mode="vanilla"), tokenizer, "prompt", "answer", system)
    encoded, _ = encode(tokenizer, examples, cfg.data.max_length)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    size = cfg.data.eval_batch_size
    return [collate(encoded[i : i + size], pad, side="right") for i in range(0, len(encoded), size)]


def antidote(model, tokenizer, cfg: Config, base: Config) -> tuple[dict, dict]:
    """Antidote (:mod:`lat.models.antidote`) with Wanda scores on harmful calibration sequences."""
    batches = calibration_batches(cfg, base, tokenizer)
    device = next(model.parameters()).device
    zeroed = prune(model, ({k: v.to(device) for k, v in b.items() if k in ("input_ids", "attention_mask")} for b in batches), cfg.defense.antidote_share)
    total = sum(m.weight.numel() for n, m in model.named_modules() if n.endswith(("lora_A.default", "lora_B.default")))
    details = {"calibration_sequences": sum(int(b["input_ids"].shape[0]) for b in batches), "zeroed": zeroed}
    metrics = {"defense/antidote_zeroed": sum(zeroed.values()), "defense/antidote_zeroed_share": sum(zeroed.values()) / max(1, total)}
    return details, metrics
