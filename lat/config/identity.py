"""Cache identities: every key a cached result is stored under, built here from the config.

A key holds every value the cached result depends on, so a result is never reused for settings
it was not made with. A value added later is left out of the key while it is unset, so results
cached before it existed keep their keys.

Keys (``$LAT_CACHE/<kind>/...``):

* ``seeds/``: :func:`seed_identity` (the aligned seed's folder, :func:`seed_key`);
* ``benign_answers/``: :func:`benign_answers_key` (the base's answers the seed SFT trains on);
* ``harmful_answers/``: :func:`harmful_answers_key` (the base's answers the deep seed's recovery
  openings are cut from);
* ``probe_answers/``: :func:`probe_answers_key` (the starting model's answers to probe prompts);
* ``answer_losses/``: :func:`answer_losses_key` (its per-token losses, for adaptive previews);
* ``evaluations/``: :func:`evaluation_key` (a whole evaluation of a folder lat built);
* the reference model's probe logits in memory: :func:`reference_identity`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import yaml

from lat.config.compose import to_dict, to_yaml
from lat.config.schema import Config
from lat.core.cache import MARKER
from lat.core.errors import UserError
from lat.core.paths import file_digest, regular_file, resolve_path
from lat.core.precision import resolve_precision, resolve_weight_dtype
from lat.core.refusals import PHRASES_DIGEST

SEED_RECIPE = 2
"""Version of how a seed is built from its settings: raised whenever the same settings would
give different weights, so a seed cached by an earlier recipe is rebuilt, never reused."""


def starting_model_key(cfg: Config) -> list:
    """What identifies the starting model in cache keys: path, start adapter, dtype, and the seed
    of a randomly initialised model."""
    return [cfg.model.name_or_path, cfg.model.adapter_path, cfg.model.dtype, cfg.run.seed if cfg.model.name_or_path == "tiny" else None]


def reference_identity(cfg: Config) -> str:
    """What the reference model's probe logits depend on besides the batch: the whole model
    section (path, adapter, dtype, kernel, ...), how the reference is made (adapters disabled or a
    frozen copy), precision, compilation and device settings, and the seed of a random model."""
    t = cfg.train
    return json.dumps(
        [starting_model_key(cfg), dataclasses.asdict(cfg.model), cfg.lora.enabled, t.precision, t.compile, t.accelerator, t.devices, t.num_nodes, t.strategy],
        sort_keys=True,
        default=str,
    )


def probe_answers_key(cfg: Config, max_new_tokens: int, prompts: Sequence[tuple], autocast: str | None) -> list:
    """The starting model's greedy answers to probe prompts ((system, prompt) pairs)."""
    return [*starting_model_key(cfg), max_new_tokens, list(prompts)] + ([autocast] if autocast else [])


def answer_losses_key(cfg: Config, examples: Sequence[tuple]) -> list:
    """The starting model's per-answer-token losses on (system, prompt, answer) triples."""
    return [*starting_model_key(cfg), cfg.data.max_length, list(examples)]


def sft_dtype(cfg: Config) -> str:
    """The weight dtype of the base during the seed's safety SFT (``align.dtype``, resolved)."""
    return resolve_weight_dtype(cfg.align.dtype, cfg.model.dtype)


def seed_identity(cfg: Config) -> dict:
    """What the aligned seed is built from: base model (and start adapter), alignment settings
    (seed included), data file digests, sequence length. ``run.seed`` is not part of it:
    fine-tuning runs with different seeds share one aligned seed."""
    a = cfg.align
    answers = a.answer_precision and resolve_precision(a.answer_precision, setting="align.answer_precision")
    a = dataclasses.replace(
        a,
        precision=resolve_precision(a.precision, setting="align.precision"),
        answer_precision=answers,
        dtype=sft_dtype(cfg),
        attn_implementation=a.attn_implementation or cfg.model.attn_implementation,
    )
    align = dataclasses.asdict(a)
    if answers is None:  # as align.precision: nothing more to record
        del align["answer_precision"]
    # At these values a setting is not recorded: as before it existed, so cached seeds keep their key.
    unset_values = (("precision", "32-true"), ("dtype", cfg.model.dtype), ("attn_implementation", None), ("benign_repeat", 1), ("benign_drop_refusals", False))
    for name, unset in unset_values:
        if align[name] == unset:
            del align[name]
    if not a.recovery_share:  # no safety-recovery augmentation: seeds cached before it keep their key
        for name in ("recovery_share", "recovery_max_tokens", "harmful_max_new_tokens"):
            del align[name]
    out = {
        "recipe": SEED_RECIPE,
        "model": cfg.model.name_or_path,
        "dtype": cfg.model.dtype,
        "adapter": cfg.model.adapter_path,
        "max_length": cfg.data.max_length,
        "align": align,
        "data": {"safety": _data_digest(a.safety_path, "align.safety_path"), "benign": _data_digest(a.benign_path, "align.benign_path")},
    }
    if cfg.model.adapter_path:  # aligned from base + adapter (seeds once cached under this key were not)
        out["start"] = "base+adapter"
    if a.recovery_share or a.benign_drop_refusals:  # the refusal phrases choose openings and anchors
        out["refusal_phrases"] = PHRASES_DIGEST
    return out


def _data_digest(path: str, setting: str) -> str:
    """sha256 of the data file ``setting`` names.

    Raises:
        UserError: It is missing, a directory or not a regular file (names ``setting``).
    """
    try:
        return file_digest(regular_file(resolve_path(path)))
    except UserError as e:
        raise UserError(f"{setting}: {e}") from None


def seed_key(cfg: Config) -> str:
    """The aligned seed's folder name under ``seeds/``: the base's name and a digest of its identity."""
    digest = hashlib.sha256(json.dumps(seed_identity(cfg), sort_keys=True).encode()).hexdigest()[:16]
    return f"{Path(cfg.model.name_or_path).name}-{digest}"


def _base_answers_key(cfg: Config, max_new_tokens: int, prompts: Sequence[str], autocast: str | None) -> list:
    key = [cfg.model.name_or_path, cfg.model.dtype, cfg.align.seed, max_new_tokens, list(prompts)] + ([autocast] if autocast else [])
    if cfg.model.adapter_path:
        key.append({"adapter": cfg.model.adapter_path})
    return key


def harmful_mix_answers_key(cfg: Config, prompts: Sequence[str], autocast: str | None) -> list:
    """The unaligned base's greedy answers to ``data.harmful_mix_path``'s requests (poisoned
    fine-tuning); ``cfg.model`` is that base, never the seed."""
    return _base_answers_key(cfg, cfg.data.harmful_mix_max_new_tokens, prompts, autocast)


def benign_answers_key(cfg: Config, prompts: Sequence[str], autocast: str | None) -> list:
    """The base model's (and start adapter's) greedy answers to the seed SFT's benign prompts."""
    return _base_answers_key(cfg, cfg.align.benign_max_new_tokens, prompts, autocast)


def harmful_answers_key(cfg: Config, prompts: Sequence[str], autocast: str | None) -> list:
    """The base model's (and start adapter's) greedy answers to the seed SFT's harmful requests
    (the safety-recovery prefixes are cut from them)."""
    return ["harmful", *_base_answers_key(cfg, cfg.align.harmful_max_new_tokens, prompts, autocast)]


def seed_report_key(cfg: Config) -> dict:
    """What ``lat align``'s report of the base and the seed depends on besides the seed: the
    evaluation settings, the task, the run seed and the training precision and accelerator
    (which set the autocast when ``eval.precision`` is unset)."""
    return {"eval": to_dict(cfg)["eval"], "task": cfg.data.task, "seed": cfg.run.seed, "precision": cfg.train.precision, "accelerator": cfg.train.accelerator}


def evaluation_key(cfg: Config, items: list, utility_records: list | None, autocast: str | None, code_digest: str) -> list | None:
    """A whole evaluation of ``model.name_or_path`` when it is a folder lat built (an aligned seed,
    a converted model: its completion marker identifies it); None otherwise (nothing cached).

    Args:
        cfg: The config (eval section, task, seed).
        items: (prompt, category, harmful response) of every harmful item evaluated.
        utility_records: The utility test records (None without utility evaluation).
        autocast: The dtype generation runs under.
        code_digest: Digest of the code and judge data the evaluation runs.
    """
    marker = Path(cfg.model.name_or_path) / MARKER
    if cfg.model.adapter_path or not marker.is_file():
        return None
    return [marker.read_text(), to_dict(cfg)["eval"], cfg.data.task, cfg.run.seed, autocast, [items, utility_records], code_digest]


RESUME_MAY_CHANGE = (
    "run.resume",
    "logging.",
    "train.epochs",
    "train.max_steps",
    "train.keep_checkpoint",
    "train.checkpoint_every_n_steps",
    "train.log_every_n_steps",
    "train.divergence_reference_cache_mb",
    "train.save_merged",
    "data.num_workers",
    "eval.sample_table_rows",
    "methods",
    "experiment",
)
"""Settings a resumed run may change (dotted names; a trailing dot covers a section): they extend
the run or change how it is logged and kept, never what its steps compute."""


def flatten(d: dict, prefix: str = "") -> dict:
    """Nested dict -> ``{"a.b": value}`` (lists kept as values)."""
    out: dict = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def changed_settings(recorded: dict, cfg: Config, may_change: Sequence[str] = RESUME_MAY_CHANGE) -> list[str]:
    """The settings of ``cfg`` that differ from a recorded config, other than ``may_change``.

    Args:
        recorded: A run's ``config.yaml`` (or an experiment's ``experiment.yaml``), loaded;
            secrets in it are redacted, so ``cfg`` is compared redacted too.
        cfg: The config it is continued with.
        may_change: Dotted names that may differ (a trailing dot covers a section).

    Returns:
        Dotted names, sorted.
    """
    old, new = flatten(recorded), flatten(yaml.safe_load(to_yaml(cfg)))
    defaults = flatten(yaml.safe_load(to_yaml(Config())))

    def free(key: str) -> bool:
        return any(key == m or (m.endswith(".") and key.startswith(m)) for m in may_change)

    def same(key: str) -> bool:
        if key not in old and key in defaults:  # a setting added since the run was recorded: unchanged at its default
            return new.get(key) == defaults[key]
        return old.get(key) == new.get(key)

    return sorted(k for k in old.keys() | new.keys() if not same(k) and not free(k))
