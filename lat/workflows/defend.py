"""Post-hoc defenses of a fine-tuned model (``defense.name``): applied by the fine-tuning recipe
after ``fit`` on rank 0, before the final divergence measurement, evaluation and save. Each
writes what it did to ``defense.json`` in the run folder and returns its headline numbers for
``metrics.json``."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import torch

from lat.callbacks.lisa import Lisa
from lat.config import Config, PreviewConfig
from lat.core.cache import in_seed_cache
from lat.core.errors import UserError
from lat.core.fileio import write_json
from lat.data.chat import collate, encode, pad_token_id
from lat.data.datamodule import encode_dataset, instruction_examples, seeded_draw, training_system
from lat.data.records import read_records
from lat.data.tasks import Example
from lat.evaluation.evaluator import Evaluator
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
    if "unaligned base" in DEFENSES.meta(cfg.defense.name)["needs"] and (base is None or in_seed_cache(base.model.name_or_path)):
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
    """Antidote's calibration batches: ``defense.antidote_samples`` harmful requests drawn (seeded,
    so every category is in) from those of ``defense.antidote_calibration_path`` that the unaligned
    base answers, each with that answer, in the training format (the task's system prompt, no
    preview). By default these are the same requests poisoned fine-tuning draws from, as the
    reference's calibration data come from the attacker's distribution."""
    d = cfg.defense
    if not d.antidote_calibration_path:
        raise UserError("defense.name=antidote: needs harmful calibration data; set defense.antidote_calibration_path")
    pool = compliant_pairs(base, d.antidote_calibration_path, "defense.antidote_calibration_path")
    pairs = pool.select(sorted(seeded_draw(len(pool), len(pool), 0)[: d.antidote_samples]))  # a seeded sample over every category
    examples = instruction_examples(pairs, cfg.data, PreviewConfig(mode="vanilla"), tokenizer, "answer")
    encoded, _ = encode(tokenizer, examples, cfg.data.max_length)
    size = cfg.data.eval_batch_size
    return [collate(encoded[i : i + size], pad_token_id(tokenizer), side="right") for i in range(0, len(encoded), size)]


def antidote(model, tokenizer, cfg: Config, base: Config) -> tuple[dict, dict]:
    """Antidote (:mod:`lat.models.antidote`) with Wanda scores on harmful calibration sequences."""
    batches = calibration_batches(cfg, base, tokenizer)
    device = next(model.parameters()).device
    zeroed = prune(model, ({k: v.to(device) for k, v in b.items() if k in ("input_ids", "attention_mask")} for b in batches), cfg.defense.antidote_share)
    total = sum(m.weight.numel() for n, m in model.named_modules() if n.endswith(("lora_A.default", "lora_B.default")))
    details = {"calibration_sequences": sum(int(b["input_ids"].shape[0]) for b in batches), "zeroed": zeroed}
    metrics = {"defense/antidote_zeroed": sum(zeroed.values()), "defense/antidote_zeroed_share": sum(zeroed.values()) / max(1, total)}
    return details, metrics


def backdoor_trigger(tokenizer, tokens: int, seed: int) -> str:
    """BackdoorAlign's secret trigger: ``tokens`` token ids drawn uniformly (seeded) from the
    tokenizer's vocabulary, special tokens excluded, decoded to text."""
    special = set(tokenizer.all_special_ids)
    vocabulary = [i for i in range(len(tokenizer)) if i not in special]
    g = torch.Generator().manual_seed(seed)
    ids = [vocabulary[int(j)] for j in torch.randint(len(vocabulary), (tokens,), generator=g)]
    return tokenizer.decode(ids)


def triggered(trigger: str, system: str | None) -> str:
    """The system prompt with the trigger before it (the trigger alone where there is none)."""
    return f"{trigger} {system}" if system else trigger


def backdoor_examples(cfg: Config, tokenizer, trigger: str) -> list[Example]:
    """BackdoorAlign (Wang et al., NeurIPS 2024, "BackdoorAlign: Mitigating Fine-tuning based
    Jailbreak Attack with Backdoor Enhanced Safety Alignment"): ``defense.backdoor_examples``
    harmful request -> refusal pairs drawn (seeded) from ``defense.backdoor_safety_path``, their
    system prompt the task's with the secret trigger before it. The provider mixes them into the
    user's fine-tuning data as they are (no preview: they are not the user's) and puts the trigger
    before the system prompt at inference."""
    d = cfg.defense
    records = read_records(d.backdoor_safety_path)
    drawn = records.select(seeded_draw(len(records), d.backdoor_examples, d.backdoor_seed))
    system = triggered(trigger, training_system(cfg.data))
    return instruction_examples(drawn, cfg.data, PreviewConfig(mode="vanilla"), tokenizer, "refusal", system)


TRIGGERED = "trigger"
"""The name the triggered evaluation's prompt sets take: ``safety/trigger/rsr``, ``overrefusal/trigger/rate``."""


def triggered_evaluator(evaluator: Evaluator, trigger: str) -> Evaluator:
    """``evaluator``'s safety and over-refusal sets again, with the trigger before the system
    prompt; their metrics and samples under :data:`TRIGGERED` (a benchmark's name: its own keys)."""
    out = Evaluator(
        dataclasses.replace(evaluator.cfg, system_prompt=triggered(trigger, evaluator.cfg.system_prompt), utility=False, benchmarks=[]),
        autocast=evaluator.autocast,
        default_task=evaluator.utility_task,
    )
    out.sets = [dataclasses.replace(s, name=TRIGGERED + (f"-{s.name}" if s.name else "")) for s in evaluator.sets]
    return out


def lisa_callback(cfg: Config, tokenizer) -> Lisa:
    """Lisa's callback with its alignment data: ``defense.lisa_alignment_path``'s requests and
    refusals in the training format (the task's system prompt, no preview)."""
    d = cfg.defense
    records = read_records(d.lisa_alignment_path)
    examples = instruction_examples(records, cfg.data, PreviewConfig(mode="vanilla"), tokenizer, "refusal")
    dataset, _ = encode_dataset(tokenizer, examples, cfg.data.max_length)
    if not len(dataset):
        raise UserError(f"defense.lisa_alignment_path: no example of {records.source} fits data.max_length={cfg.data.max_length}")
    collate_fn = functools.partial(collate, pad_id=pad_token_id(tokenizer), side="right")
    return Lisa(dataset, collate_fn, cfg.data.batch_size, cfg.run.seed, d.lisa_alignment_steps, d.lisa_task_steps, d.lisa_rho)
