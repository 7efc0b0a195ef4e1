"""Batched generation with left padding, length-sorted batches and assistant-turn prefill.

A prompt is the chat template's generation prompt (system + user turns, then the assistant
header), optionally followed by *prefill* token ids: the model continues an assistant message
that already begins with them (the prefilling attack of the JSR metric). Prompts are sorted by
length so each batch pads little, left-padded so every row ends where generation starts, and
restored to input order. Under greedy decoding a batch gives the same tokens as one prompt at a
time (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from tqdm.auto import tqdm

from lat.data.chat import pad_token_id, render_prompt
from lat.data.tasks import Example


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
    """

    max_new_tokens: int = 64
    batch_size: int = 16
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    progress: bool = False
    autocast: str | None = None


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
    try:
        for batch in tqdm(batches, desc="generate", disable=not settings.progress, leave=False):
            ids, mask = _left_pad([rows[i] for i in batch], pad_id, device)
            if settings.do_sample:
                torch.manual_seed(settings.seed)
            with cast:
                seqs = model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    max_new_tokens=settings.max_new_tokens,
                    do_sample=settings.do_sample,
                    temperature=settings.temperature if settings.do_sample else None,
                    top_p=settings.top_p if settings.do_sample else None,
                    top_k=None,
                    eos_token_id=stops,
                    pad_token_id=pad_id,
                )
            for row, i in enumerate(batch):
                new, stopped = _trim(seqs[row, ids.shape[1] :].tolist(), set(stops))
                text = tokenizer.decode(new, skip_special_tokens=True)
                out[i] = Generation(text, new, len(rows[i]), cuts[i], stopped)
    finally:
        model.train(was_training)
    return out  # type: ignore[return-value]


def answer(model, tokenizer, examples: Sequence[Example], settings: GenerationSettings) -> list[str]:
    """Greedy answers of ``model`` to chat examples (their ``answer`` fields are ignored)."""
    return [g.text for g in generate(model, tokenizer, [prompt_ids(tokenizer, ex) for ex in examples], settings)]
