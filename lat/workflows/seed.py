"""The safety-aligned seed: built once from the base model and cached (``lat align`` also reports it).

The embedded SmolLM2-135M-Instruct complies with harmful requests, so the LookAhead study needs a
seed that refuses. The seed is the base after a short LoRA safety SFT, merged:

* harmful requests with varied refusals (``align.safety_path``), and
* benign requests answered by the *base model itself* (``align.benign_path``; answers generated
  once, greedy, cached), so alignment teaches refusing without moving benign behaviour,
* system prompts cycled over the examples (``align.system_prompts``).

``align=deep`` adds safety-recovery augmentation (Qi et al., ICLR 2025, "Safety Alignment Should
Be Made More Than Just a Few Tokens Deep"): for a share of the harmful requests
(``align.recovery_share``) the assistant turn opens with the first k tokens of the base model's own
greedy answer to the request (k uniform in [1, min(K, its length)], ``align.recovery_max_tokens``,
drawn with ``align.seed``), then the refusal; the opening carries no loss, the refusal does
(:func:`recovery_choice`, :func:`recovery_openings`). The seed then refuses after a harmful
opening too, so JSR starts high. Only the chosen requests are answered by the base (once, cached);
one the base itself refuses has no harmful opening to recover from and stays plain.

The SFT may keep the frozen base in bf16 (``align.dtype``, ``align.attn_implementation``: faster
on a CPU with AMX); its fp32 adapters are then merged into the base loaded in ``model.dtype``.

The merged seed is saved as an ordinary model folder under ``$LAT_CACHE/seeds/<key>/``; the key
covers the base, the alignment settings and the data files, so a change rebuilds it, and a
missing or truncated folder is rebuilt with a message.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from pathlib import Path

from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

from lat.config import AlignConfig, Config, DataConfig, DefenseConfig, LoraConfig, ModelConfig, PreviewConfig, TrainConfig
from lat.config.identity import benign_answers_key, harmful_answers_key, seed_identity, seed_key, sft_dtype
from lat.core.cache import cache_root, cached_json, ensure_folder, is_complete
from lat.core.fileio import write_json
from lat.core.precision import autocast_dtype
from lat.core.ranks import is_primary, wait_for
from lat.core.refusals import refusal_at, refusal_opens
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


def answer_autocast(a: AlignConfig) -> str | None:
    """The autocast dtype the base model's own answers are generated under (``align.answer_precision``,
    else ``align.precision``); None = the model's own dtype."""
    return autocast_dtype(a.answer_precision or a.precision, setting="align.answer_precision" if a.answer_precision else "align.precision")


def base_answers(model, tok, prompts: list[str], cfg: Config, harmful: bool = False) -> list[str]:
    """The base model's own greedy answers to the seed SFT's benign prompts, or (``harmful``) to
    its harmful requests (with its start adapter merged, if any; cached by model, adapter, prompts
    and length)."""
    a = cfg.align
    cast = answer_autocast(a)
    key = (harmful_answers_key if harmful else benign_answers_key)(cfg, prompts, cast)
    tokens = a.harmful_max_new_tokens if harmful else a.benign_max_new_tokens
    settings = GenerationSettings(max_new_tokens=tokens, batch_size=cfg.eval.batch_size, progress=True, autocast=cast)
    return cached_json("harmful_answers" if harmful else "benign_answers", key, lambda: answer(model, tok, [Example(p, "") for p in prompts], settings))


def alignment_inputs(cfg: Config) -> tuple[list[tuple[str, str]], list[str]]:
    """The safety pairs (prompt, refusal) and the benign prompts, read and their fields checked."""
    a = cfg.align
    safety = read_records(a.safety_path).head(a.max_safety)
    benign = read_records(a.benign_path).head(a.max_benign)
    return list(zip(safety.texts("prompt"), safety.texts("refusal"))), benign.texts("prompt")


def recovery_choice(n: int, share: float, seed: int) -> list[int]:
    """The ``round(share * n)`` of n safety examples (indices, ascending) drawn with
    ``random.Random(seed)`` to open with a harmful answer; only these need one generated."""
    return sorted(random.Random(seed).sample(range(n), round(share * n)))


def recovery_openings(tok, answers: Sequence[str], max_tokens: int, seed: int) -> list[str | None]:
    """The harmful opening cut from each base answer (None where there is nothing to recover
    from: an empty answer or one a refusal opens, :func:`~lat.core.refusals.refusal_opens`; an opening with no visible text or
    holding a refusal phrase itself).

    Each opening is the first k tokens of the answer (leading whitespace dropped, which a chat
    template may trim), decoded, with k uniform in [1, min(max_tokens, its tokens)], drawn in
    order with ``random.Random(seed + 1)``.

    Args:
        tok: The base model's tokenizer.
        answers: The base model's answers to the chosen harmful requests.
        max_tokens: K, the most tokens an opening takes.
        seed: Seed of the draws (``align.seed``).
    """
    rng = random.Random(seed + 1)
    out: list[str | None] = []
    for text in answers:
        text = text.lstrip()
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if not ids or refusal_opens(text):
            out.append(None)
            continue
        opening = tok.decode(ids[: rng.randint(1, min(max_tokens, len(ids)))])
        out.append(opening if opening.strip() and refusal_at(opening) is None else None)
    return out


def recovered(opening: str, refusal: str) -> str:
    """The assistant turn of a recovery example: the harmful opening, then the refusal (after a
    space unless the opening ends in whitespace)."""
    return opening + ("" if opening[-1:].isspace() else " ") + refusal


def kept_anchor(answer: str, drop_refusals: bool) -> bool:
    """Whether a benign prompt's base answer becomes an SFT target: not an empty one, nor
    (``drop_refusals``, ``align.benign_drop_refusals``) one a refusal phrase opens."""
    return bool(answer.strip()) and not (drop_refusals and refusal_opens(answer.lstrip()))


def alignment_records(cfg: Config, model, tok, inputs: tuple[list[tuple[str, str]], list[str]] | None = None) -> list[dict]:
    """Safety (prompt -> refusal, or prompt -> harmful opening + refusal with the opening in
    ``prefill``, which carries no loss) and benign (prompt -> base answer) records with system
    prompts (``inputs``: what :func:`alignment_inputs` read, else read now)."""
    a = cfg.align
    pairs, prompts = inputs or alignment_inputs(cfg)
    openings: list[str | None] = [None] * len(pairs)
    if a.recovery_share:
        chosen = recovery_choice(len(pairs), a.recovery_share, a.seed)
        harmful = base_answers(model, tok, [pairs[i][0] for i in chosen], cfg, harmful=True)
        for i, opening in zip(chosen, recovery_openings(tok, harmful, a.recovery_max_tokens, a.seed)):
            openings[i] = opening
    rows = [(p, r if o is None else recovered(o, r), o) for (p, r), o in zip(pairs, openings)]
    rows += [(p, r, None) for p, r in zip(prompts, base_answers(model, tok, prompts, cfg)) if kept_anchor(r, a.benign_drop_refusals)] * a.benign_repeat
    systems = list(a.system_prompts) or [""]
    return [
        {"instruction": p, "output": o, "system": systems[i % len(systems)]} | ({"prefill": opening} if opening is not None else {})
        for i, (p, o, opening) in enumerate(rows)
    ]


def alignment_stats(records: Sequence[dict], n_safety: int, chosen: int) -> dict:
    """How many safety, recovery and benign examples the SFT trains on (kept beside the seed).

    Args:
        records: What :func:`alignment_records` returned.
        n_safety: How many of them (the first) are safety examples.
        chosen: How many safety examples were drawn to open with a harmful answer (those whose
            base answer was empty or a refusal have none: ``chosen_without_opening``).
    """
    recovery = sum("prefill" in r for r in records[:n_safety])
    return {
        "safety": n_safety,
        "recovery": recovery,
        "chosen_without_opening": chosen - recovery,
        "plain_refusals": n_safety - recovery,
        "benign": len(records) - n_safety,
    }


def sft_config(cfg: Config, data_path: Path, root: Path) -> Config:
    """The training config of the safety SFT (LoRA on the base, no preview, no evaluation).

    Training, LoRA, data and preview settings are the schema's defaults plus the ``align`` ones
    (and the experiment's ``data.max_length``, which the identity records), never the rest of
    the experiment's ``train``, ``lora``, ``data``, ``preview`` or ``defense`` sections (its
    packing, safety mixing, poisoning, field names, answer masking, post-hoc defense ...), so the
    seed depends only on what
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
        # One process: a multi-GPU default (devices=auto) would start DDP ranks from the command
        # line that asked for the seed, inside its build.
        train=TrainConfig(max_steps=a.steps, epochs=1000, lr=a.lr, precision=a.precision, divergence_every_n_steps=0, checkpoint_every_n_steps=0, devices="1"),
        data=data,
        preview=PreviewConfig(),
        defense=DefenseConfig(),
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
        records = alignment_records(cfg, base, tok, inputs)
        write_records(data_path, records)
        chosen = len(recovery_choice(len(inputs[0]), cfg.align.recovery_share, cfg.align.seed))
        write_json(tmp / "alignment_stats.json", alignment_stats(records, len(inputs[0]), chosen))
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
    if build and not is_primary():  # rank 0 builds it; a second builder would train a second seed
        folder, identity = seed_folder(cfg), seed_identity(cfg)
        wait_for(lambda: is_complete(folder, identity), "the aligned seed", folder)
    else:
        folder = build_seed(cfg) if build else seed_folder(cfg)
    return dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, name_or_path=str(folder), adapter_path=None), train=dataclasses.replace(cfg.train, start_from="base")
    )
