"""Batched generation with left padding, length-sorted batches and assistant-turn prefill.

A prompt is the chat template's generation prompt (system + user turns, then the assistant
header), optionally followed by *prefill* token ids: the model continues an assistant message
that already begins with them (the prefilling attack of the JSR metric). Prompts are sorted by
length so each batch pads little, left-padded so every row ends where generation starts, and
restored to input order. Under greedy decoding a batch gives the same tokens as one prompt at a
time (tested).

Greedy decoding (every evaluation) runs its own loop instead of ``model.generate`` when the
model's generation config asks for nothing but the argmax (:func:`plain_greedy`), for two
savings that leave each row's tokens as they were: the prompts' common head (the chat template's
system turn, about half of a short prompt) is encoded once per batch instead of once per row,
and rows that reached a stop token leave the batch instead of decoding padding until the
longest row ends (experiments/benchmarks/RESULTS.md). A model's LoRA adapters are merged into
its base weights while it generates (``GenerationSettings.merge_lora``, ``eval.merge_lora``;
:mod:`lat.models.merging` restores the base bit for bit afterwards): one product per layer and
step instead of three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from tqdm.auto import tqdm
from transformers import DynamicCache

from lat.data.chat import pad_token_id, render_prompt
from lat.data.tasks import Example
from lat.models.merging import merged_lora


@dataclass(frozen=True)
class GenerationSettings:
    """How to decode.

    Attributes:
        max_new_tokens: Tokens generated per prompt at most.
        batch_size: Prompts per forward batch.
        do_sample: Sample instead of greedy decoding.
        temperature: Sampling temperature.
        top_p: Nucleus sampling mass.
        seed: Seed for sampling (set before each batch).
        progress: Show a progress bar.
        autocast: Autocast dtype name (``"bfloat16"``) or None for the model's own dtype.
        merge_lora: Merge the model's LoRA adapters into its base weights while generating
            (:func:`~lat.models.merging.merged_lora`; the base weights are restored bit for bit).
    """

    max_new_tokens: int = 64
    batch_size: int = 16
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    progress: bool = False
    autocast: str | None = None
    merge_lora: bool = True


@dataclass(frozen=True)
class Generation:
    """One generated continuation.

    Attributes:
        text: The decoded new tokens (special tokens dropped).
        token_ids: The new token ids (up to and including the stop token).
        prompt_tokens: Prompt length after any cut.
        cut_tokens: Tokens removed from the left of a prompt longer than the context.
        stopped: Generation ended on an end-of-sequence token (not on max_new_tokens).
    """

    text: str
    token_ids: list[int]
    prompt_tokens: int
    cut_tokens: int
    stopped: bool


def prompt_ids(tokenizer, example: Example, prefill_ids: Sequence[int] = ()) -> list[int]:
    """Token ids of the generation prompt, plus prefilled assistant tokens."""
    ids = tokenizer(render_prompt(tokenizer, example), add_special_tokens=False)["input_ids"]
    return list(ids) + list(prefill_ids)


def prefix_ids(tokenizer, text: str, k: int) -> list[int]:
    """The first ``k`` tokens of ``text`` in the model's tokenizer (no special tokens added)."""
    return tokenizer(text, add_special_tokens=False)["input_ids"][:k]


def stop_ids(model, tokenizer) -> list[int]:
    """Token ids that end a generation: the tokenizer's eos and the generation config's."""
    ids = {tokenizer.eos_token_id}
    cfg = getattr(model.generation_config, "eos_token_id", None)
    ids |= set(cfg if isinstance(cfg, (list, tuple)) else [cfg])
    return sorted(i for i in ids if i is not None)


def context_limit(model) -> int | None:
    """The model's maximum sequence length, when it declares one."""
    return getattr(model.config, "max_position_embeddings", None)


def _left_pad(rows: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r) :] = 1
    return ids.to(device), mask.to(device)


# Generation-config fields that make greedy decoding more than the argmax of the logits, with the
# values that leave it plain.
_PLAIN = {
    "repetition_penalty": (None, 1.0),
    "encoder_repetition_penalty": (None, 1.0),
    "no_repeat_ngram_size": (None, 0),
    "bad_words_ids": (None,),
    "min_length": (None, 0),
    "min_new_tokens": (None, 0),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,),
    "sequence_bias": (None,),
    "exponential_decay_length_penalty": (None,),
    "renormalize_logits": (None, False),
    "guidance_scale": (None, 1.0),
    "num_beams": (None, 1),
    "penalty_alpha": (None,),
    "dola_layers": (None,),
    "watermarking_config": (None,),
    "prompt_lookup_num_tokens": (None,),
}


def plain_greedy(model) -> bool:
    """Whether :func:`_greedy` decodes what ``model.generate`` would: a decoder-only model that
    keeps its past in a ``DynamicCache``, whose generation config asks for the argmax of the
    logits alone (no penalty, forced, suppressed or biased token, beam or lookup)."""
    config = getattr(model, "generation_config", None)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    dynamic = getattr(base, "_supports_default_dynamic_cache", lambda: False)()
    decoder_only = not getattr(base.config, "is_encoder_decoder", False)
    return config is not None and dynamic and decoder_only and all(getattr(config, name, None) in plain for name, plain in _PLAIN.items())


def shared_head(rows: Sequence[Sequence[int]]) -> int:
    """Length of the token prefix every row shares, leaving each row at least one token of its own
    (the token whose logits start its generation)."""
    first, shortest = rows[0], min(len(r) for r in rows)
    n = 0
    while n < shortest - 1 and all(r[n] == first[n] for r in rows):
        n += 1
    return n


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of a padded batch as ``model.generate`` derives them: each row counts its own
    tokens, pads get 0."""
    return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)


def _greedy(model, rows: list[list[int]], pad_id: int, stops: Sequence[int], settings: GenerationSettings, device) -> list[list[int]]:
    """Greedy continuations of ``rows`` (token ids), each up to and including its stop token.

    The shared head (:func:`shared_head`) is encoded once and its cache repeated over the rows;
    the rest of each row is left-padded after it, so a batch is laid out ``[head | pads | rest]``
    (pads masked, positions counted per row as under plain left padding). A row that emits a stop
    token leaves the batch and the cache.

    Args:
        model: A causal LM (peft-wrapped or not) in eval mode.
        rows: B prompts as token ids.
        pad_id: Padding token id.
        stops: Token ids that end a row.
        settings: Decoding settings (``max_new_tokens`` is read).
        device: Where the model is.

    Returns:
        B lists of new token ids, in the order of ``rows``.
    """
    head = shared_head(rows) if len(rows) > 1 else 0
    cache = DynamicCache(config=model.config)
    if head:
        model(input_ids=torch.tensor([rows[0][:head]], device=device), cache=cache, use_cache=True, logits_to_keep=1)
        cache.batch_repeat_interleave(len(rows))
    rest, rest_mask = _left_pad([r[head:] for r in rows], pad_id, device)
    mask = torch.cat([torch.ones((len(rows), head), dtype=torch.long, device=device), rest_mask], dim=1)
    out = model(input_ids=rest, attention_mask=mask, position_ids=_positions(mask)[:, head:], cache=cache, use_cache=True, logits_to_keep=1)
    stop = torch.tensor(list(stops), device=device)
    new: list[list[int]] = [[] for _ in rows]
    alive = torch.arange(len(rows), device=device)
    for step in range(settings.max_new_tokens):
        token = out.logits[:, -1].float().argmax(-1)
        for row, t in zip(alive.tolist(), token.tolist()):
            new[row].append(t)
        going = ~torch.isin(token, stop)
        if step == settings.max_new_tokens - 1 or not going.any():
            break
        if not going.all():
            keep = going.nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            alive, token, mask = alive[keep], token[keep], mask[keep]
        mask = torch.cat([mask, mask.new_ones((len(alive), 1))], dim=1)
        out = model(input_ids=token[:, None], attention_mask=mask, position_ids=mask.sum(-1, keepdim=True) - 1, cache=cache, use_cache=True)
    return new


def _trim(new: list[int], stops: set[int]) -> tuple[list[int], bool]:
    for i, t in enumerate(new):
        if t in stops:
            return new[: i + 1], True
    return new, False


@torch.no_grad()
def generate(model, tokenizer, prompts: Sequence[Sequence[int]], settings: GenerationSettings) -> list[Generation]:
    """Generate a continuation for each prompt.

    Args:
        model: A causal LM (peft-wrapped or not), in eval mode.
        tokenizer: Its tokenizer.
        prompts: N lists of prompt token ids (see :func:`prompt_ids`).
        settings: Decoding settings.

    Returns:
        N generations in input order.
    """
    pad_id = pad_token_id(tokenizer)
    stops = stop_ids(model, tokenizer)
    limit = context_limit(model)
    budget = None if limit is None else max(1, limit - settings.max_new_tokens)
    rows, cuts = [], []
    for p in prompts:
        cut = 0 if budget is None else max(0, len(p) - budget)
        rows.append(list(p)[cut:])
        cuts.append(cut)
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
    out: list[Generation | None] = [None] * len(rows)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    batches = [order[i : i + settings.batch_size] for i in range(0, len(order), settings.batch_size)]
    cast = torch.autocast(device.type, dtype=getattr(torch, settings.autocast or "float32"), enabled=settings.autocast is not None)
    decode = _library if settings.do_sample or not plain_greedy(model) else _greedy
    try:
        with merged_lora(model, settings.merge_lora):
            for batch in tqdm(batches, desc="generate", disable=not settings.progress, leave=False):
                with cast:
                    news = decode(model, [rows[i] for i in batch], pad_id, stops, settings, device)
                for i, tokens in zip(batch, news):
                    new, stopped = _trim(tokens, set(stops))
                    text = tokenizer.decode(new, skip_special_tokens=True)
                    out[i] = Generation(text, new, len(rows[i]), cuts[i], stopped)
    finally:
        model.train(was_training)
    return out  # type: ignore[return-value]


def _library(model, rows: list[list[int]], pad_id: int, stops: Sequence[int], settings: GenerationSettings, device) -> list[list[int]]:
    """Continuations of ``rows`` by ``model.generate`` (sampling, or a generation config with
    logits processors), padded after a row's stop token."""
    ids, mask = _left_pad(rows, pad_id, device)
    if settings.do_sample:
        torch.manual_seed(settings.seed)
    seqs = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=settings.max_new_tokens,
        do_sample=settings.do_sample,
        temperature=settings.temperature if settings.do_sample else None,
        top_p=settings.top_p if settings.do_sample else None,
        top_k=None,
        eos_token_id=list(stops),
        pad_token_id=pad_id,
    )
    return seqs[:, ids.shape[1] :].tolist()


def answer(model, tokenizer, examples: Sequence[Example], settings: GenerationSettings) -> list[str]:
    """Greedy answers of ``model`` to chat examples (their ``answer`` fields are ignored)."""
    return [g.text for g in generate(model, tokenizer, [prompt_ids(tokenizer, ex) for ex in examples], settings)]
