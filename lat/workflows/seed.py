"""The safety-aligned seed: built once from the base model and cached (``lat align`` also reports it).

The embedded SmolLM2-135M-Instruct complies with harmful requests, so the LookAhead study needs a
seed that refuses. The seed is the base after a short LoRA safety SFT, merged:

* harmful requests with varied refusals (``align.safety_path``), and
* benign requests answered by the *base model itself* (``align.benign_path``; answers generated
  once, greedy, cached), so alignment teaches refusing without moving benign behaviour,
* system prompts cycled over the examples (``align.system_prompts``).

The SFT may keep the frozen base in bf16 (``align.dtype``, ``align.attn_implementation``: faster
on a CPU with AMX); its fp32 adapters are then merged into the base loaded in ``model.dtype``.

The merged seed is saved as an ordinary model folder under ``$LAT_CACHE/seeds/<key>/``; the key
covers the base, the alignment settings and the data files, so a change rebuilds it, and a
missing or truncated folder is rebuilt with a message.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

from lat.config import Config, DataConfig, LoraConfig, ModelConfig, PreviewConfig, TrainConfig
from lat.config.identity import benign_answers_key, seed_identity, seed_key, sft_dtype
from lat.core.cache import cache_root, cached_json, ensure_folder
from lat.core.precision import autocast_dtype
from lat.data.records import read_records, write_records
from lat.data.tasks import Example
from lat.evaluation.generate import GenerationSettings, answer
from lat.models.loading import load_for_eval
from lat.workflows.finetune import fine_tune


def sft_model(cfg: Config) -> ModelConfig:
    """The model section the safety SFT loads: ``model`` with ``align.dtype`` (resolved) and
    ``align.attn_implementation`` applied; a start adapter (``model.adapter_path``) is merged
    into the base before the SFT, so the seed is aligned from base + adapter, as its key says."""
    a = cfg.align
    return dataclasses.replace(cfg.model, dtype=sft_dtype(cfg), attn_implementation=a.attn_implementation or cfg.model.attn_implementation)


def seed_folder(cfg: Config) -> Path:
    """Where the seed for this config is cached."""
    return cache_root() / "seeds" / seed_key(cfg)


def benign_answers(model, tok, prompts: list[str], cfg: Config) -> list[str]:
    """The base model's own greedy answers to benign prompts (with its start adapter merged, if
    any; cached by model, adapter and prompts)."""
    a = cfg.align
    cast = autocast_dtype(a.answer_precision or a.precision, setting="align.answer_precision" if a.answer_precision else "align.precision")
    key = benign_answers_key(cfg, prompts, cast)
    settings = GenerationSettings(max_new_tokens=cfg.align.benign_max_new_tokens, batch_size=cfg.eval.batch_size, progress=True, autocast=cast)
    return cached_json("benign_answers", key, lambda: answer(model, tok, [Example(p, "") for p in prompts], settings))


def alignment_inputs(cfg: Config) -> tuple[list[tuple[str, str]], list[str]]:
    """The safety pairs (prompt, refusal) and the benign prompts, read and their fields checked."""
    a = cfg.align
    safety = read_records(a.safety_path).head(a.max_safety)
    benign = read_records(a.benign_path).head(a.max_benign)
    return list(zip(safety.texts("prompt"), safety.texts("refusal"))), benign.texts("prompt")


def alignment_records(cfg: Config, model, tok, inputs: tuple[list[tuple[str, str]], list[str]] | None = None) -> list[dict]:
    """Safety (prompt -> refusal) and benign (prompt -> base answer) records with system prompts
    (``inputs``: what :func:`alignment_inputs` read, else read now)."""
    pairs, prompts = inputs or alignment_inputs(cfg)
    pairs = list(pairs) + [(p, r) for p, r in zip(prompts, benign_answers(model, tok, prompts, cfg)) if r.strip()]
    systems = list(cfg.align.system_prompts) or [""]
    return [{"instruction": p, "output": o, "system": systems[i % len(systems)]} for i, (p, o) in enumerate(pairs)]


def sft_config(cfg: Config, data_path: Path, root: Path) -> Config:
    """The training config of the safety SFT (LoRA on the base, no preview, no evaluation).

    Training, LoRA, data and preview settings are the schema's defaults plus the ``align`` ones
    (and the experiment's ``data.max_length``, which the identity records), never the rest of
    the experiment's ``train``, ``lora``, ``data`` or ``preview`` sections (its packing, safety
    mixing, field names, answer masking ...), so the seed depends only on what
    :func:`seed_identity` records.
    """
    a = cfg.align
    data = DataConfig(
        task="instruction",
        train_path=str(data_path),
        batch_size=a.batch_size,
        max_length=cfg.data.max_length,
        eval_batch_size=cfg.data.eval_batch_size,
        num_workers=cfg.data.num_workers,
    )
    return dataclasses.replace(
        cfg,
        model=sft_model(cfg),
        lora=LoraConfig(enabled=True, r=a.r, alpha=2 * a.r, dropout=a.lora_dropout),
        train=TrainConfig(max_steps=a.steps, epochs=1000, lr=a.lr, precision=a.precision, divergence_every_n_steps=0, checkpoint_every_n_steps=0),
        data=data,
        preview=PreviewConfig(),
        eval=dataclasses.replace(cfg.eval, during_training=False),
        logging=dataclasses.replace(cfg.logging, wandb_mode="disabled"),
        run=dataclasses.replace(cfg.run, seed=a.seed, root=str(root), name="sft", resume=False),
    )


def merge_into_base(trained, cfg: Config):
    """The SFT's LoRA adapters (fp32) merged into the base loaded as ``model`` says (its dtype,
    not ``align.dtype``): the seed keeps the model's dtype whatever the SFT stored the base in.

    Args:
        trained: The peft model the SFT trained.
        cfg: The experiment config (its ``model`` section, ``align.seed``).
    """
    base, _ = load_for_eval(cfg.model, cfg.align.seed)  # base + start adapter, as the SFT trained it
    target = get_peft_model(base, trained.peft_config["default"])
    set_peft_model_state_dict(target, get_peft_model_state_dict(trained))
    return target.merge_and_unload()


def build_seed(cfg: Config) -> Path:
    """The aligned seed folder (built once per identity; rebuilt if missing or damaged).

    The alignment data is read first, so a mistake in it is reported before any build starts.
    """
    folder, identity = seed_folder(cfg), seed_identity(cfg)  # names a missing data file's setting
    inputs = alignment_inputs(cfg)

    def build(tmp: Path) -> None:
        base, tok = load_for_eval(cfg.model, cfg.align.seed)
        data_path = tmp / "alignment_data.jsonl"
        write_records(data_path, alignment_records(cfg, base, tok, inputs))
        del base
        result = fine_tune(sft_config(cfg, data_path, tmp))
        merged = merge_into_base(result.module.model, cfg)
        merged.save_pretrained(str(tmp))
        result.tokenizer.save_pretrained(str(tmp))

    return ensure_folder(folder, identity, build, "aligned seed")


def seed_config(cfg: Config, build: bool = True) -> Config:
    """``cfg`` with the model replaced by the aligned seed (or unchanged when alignment is off).

    Args:
        cfg: The config.
        build: Build the seed if it is not cached; False only names its folder (to compare a
            planned run's config with a finished one's, say).
    """
    if not cfg.align.enabled:
        return cfg
    folder = build_seed(cfg) if build else seed_folder(cfg)
    return dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, name_or_path=str(folder), adapter_path=None), train=dataclasses.replace(cfg.train, start_from="base")
    )
