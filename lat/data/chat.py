"""Chat formatting and tokenization with an exact answer mask.

Each example is rendered with the tokenizer's own chat template twice: the prompt (system + user
turns and the generation prompt, exactly what the model sees at inference) and the full
conversation. The full text must start with the prompt text; the rest is the answer span
(answer + the template's end-of-turn). Labels are the token ids on the answer span and -100 on
every prompt token; padding is masked later from the attention mask (pad may equal eos).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from lat.core.errors import UserError
from lat.data.tasks import Example

IGNORE_INDEX = -100


def messages(example: Example, with_answer: bool) -> list[dict]:
    """The example as chat messages (system turn only when set)."""
    msgs = [{"role": "system", "content": example.system}] if example.system else []
    msgs.append({"role": "user", "content": example.prompt})
    if with_answer:
        msgs.append({"role": "assistant", "content": example.answer})
    return msgs


def render_prompt(tokenizer, example: Example) -> str:
    """The inference prompt: system/user turns plus the assistant generation prompt."""
    return tokenizer.apply_chat_template(messages(example, False), tokenize=False, add_generation_prompt=True)


def render(tokenizer, example: Example) -> tuple[str, str]:
    """Split the rendered conversation into (prompt text, answer-span text).

    Raises:
        UserError: The tokenizer has no chat template, or its full render does not begin with
            its prompt render (the answer span would be ambiguous).
    """
    if not getattr(tokenizer, "chat_template", None):
        raise UserError("tokenizer has no chat template; use a chat model or set one on the tokenizer")
    prompt = render_prompt(tokenizer, example)
    full = tokenizer.apply_chat_template(messages(example, True), tokenize=False)
    if not full.startswith(prompt):
        raise UserError("chat template: the full conversation does not start with the generation prompt; cannot locate the answer")
    return prompt, full[len(prompt) :]


@dataclass
class Encoded:
    """One tokenized example (unpadded).

    Attributes:
        input_ids: (T,) prompt then answer-span token ids.
        labels: (T,) -100 on prompt tokens, token ids on the answer span.
        answer_start: Index of the first answer token (== number of prompt tokens).
        truncated: Answer tokens cut (to fit ``max_length`` or ``max_answer_tokens``).
    """

    input_ids: list[int]
    labels: list[int]
    answer_start: int
    truncated: int = 0


def encode(tokenizer, examples: Sequence[Example], max_length: int | None = None, max_answer_tokens: int | None = None) -> tuple[list[Encoded], list[int]]:
    """Tokenize examples in batch and build their labels.

    The prompt is tokenized on its own (as at inference) and the full text in one piece; when the
    full tokenization begins with the prompt tokens it is used as is, otherwise the answer span is
    tokenized on its own and appended, so the prompt tokens always match inference exactly.
    Answers longer than the budget are cut from the end; an example whose prompt leaves no room
    for a single answer token is dropped (an all-masked row has no loss). An example's leading
    answer tokens carry no loss when it asks so (``no_loss_tokens``, and the tokens within its
    first ``no_loss_chars`` answer characters: a masked preview); one with nothing left to learn
    is dropped too.

    Args:
        tokenizer: A Hugging Face tokenizer with a chat template.
        examples: N examples.
        max_length: Maximum tokens per example (None = no limit).
        max_answer_tokens: Keep at most this many answer tokens (None = all).

    Returns:
        (encoded examples, indices of dropped examples).
    """
    rendered = [render(tokenizer, ex) for ex in examples]
    prompts = tokenizer([p for p, _ in rendered], add_special_tokens=False)["input_ids"]
    fulls = tokenizer([p + a for p, a in rendered], add_special_tokens=False)["input_ids"]
    odd = [i for i, (p, f) in enumerate(zip(prompts, fulls)) if f[: len(p)] != p]
    if odd:
        spans = tokenizer([rendered[i][1] for i in odd], add_special_tokens=False)["input_ids"]
        for i, span in zip(odd, spans):
            fulls[i] = prompts[i] + span
    out, dropped = [], []
    for i, (p, f) in enumerate(zip(prompts, fulls)):
        n_answer = len(f) - len(p)
        keep = n_answer if max_length is None else min(n_answer, max_length - len(p))
        keep = keep if max_answer_tokens is None else min(keep, max_answer_tokens)
        ex = examples[i]
        silent = ex.no_loss_tokens + (
            head_tokens(tokenizer, *rendered[i], ex.answer[: ex.no_loss_chars], None if i in odd else len(p)) if ex.no_loss_chars else 0
        )
        if keep - silent < 1:  # no answer token left to learn from: an all-masked row has no loss
            dropped.append(i)
            continue
        ids = f[: len(p) + keep]
        labels = [IGNORE_INDEX] * (len(p) + silent) + ids[len(p) + silent :]
        out.append(Encoded(ids, labels, len(p), n_answer - keep))
    return out, dropped


def head_tokens(tokenizer, prompt: str, span: str, head: str, prompt_tokens: int | None) -> int:
    """How many answer-span tokens lie entirely within ``head``, the start of the answer.

    Args:
        prompt: The rendered prompt text.
        span: The rendered answer span (answer + end of turn).
        head: The answer's first characters (a real preview's head, or the virtual prefix P).
        prompt_tokens: Number of prompt tokens at the start of the full tokenization, or None
            when the answer span was tokenized on its own (see :func:`encode`).

    Raises:
        UserError: The chat template changed the answer's start, so the head cannot be found.
    """
    at = span.find(head)
    if at < 0:
        raise UserError(f"preview.mask_preview: the chat template changed the answer's start; cannot find {head[:40]!r}")
    alone = prompt_tokens is None
    text, base, start = (span, 0, 0) if alone else (prompt + span, len(prompt), prompt_tokens)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    end = base + at + len(head)
    return sum(1 for _, stop in enc["offset_mapping"][start:] if stop <= end)


def pad_token_id(tokenizer) -> int:
    """The id padding is written with: the tokenizer's pad token, else its end-of-sequence token."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def collate(batch: Sequence[Encoded], pad_id: int, side: str = "right") -> dict[str, torch.Tensor]:
    """Pad a batch to its longest example.

    Args:
        batch: B encoded examples.
        pad_id: Token id written into padding (never used to find padding).
        side: ``right`` for training, ``left`` for generation.

    Returns:
        ``input_ids`` (B, T) long, ``attention_mask`` (B, T) long, ``labels`` (B, T) long with
        -100 on prompt and padding, ``answer_start`` (B,) long index of the first answer token
        in the padded row.
    """
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    start = torch.empty(len(batch), dtype=torch.long)
    for row, e in enumerate(batch):
        n = len(e.input_ids)
        lo = 0 if side == "right" else width - n
        ids[row, lo : lo + n] = torch.tensor(e.input_ids)
        labels[row, lo : lo + n] = torch.tensor(e.labels)
        mask[row, lo : lo + n] = 1
        start[row] = lo + e.answer_start
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "answer_start": start}


def pack_rows(lengths: Sequence[int], width: int) -> list[list[int]]:
    """Group examples into rows of at most ``width`` tokens: longest first, each into the first
    row it fits (first-fit decreasing); a longer example gets a row of its own.

    Args:
        lengths: Token count of each example.
        width: Most tokens per row.

    Returns:
        Rows of example indices, in placement order.
    """
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        row = next((r for r, free in enumerate(room) if lengths[i] <= free), None)
        if row is None:
            rows.append([i])
            room.append(width - lengths[i])
        else:
            rows[row].append(i)
            room[row] -= lengths[i]
    return rows


def collate_packed(batch: Sequence[Encoded], pad_id: int, width: int) -> dict[str, torch.Tensor]:
    """Pack a training batch into rows of at most ``width`` tokens (see :func:`pack_rows`).

    There is no attention mask: transformers reads the packing from ``position_ids``, which
    restart at 0 at every example, and masks attention across examples. The padding at the end of
    a row is one more segment of its own (positions from 0, labels -100), so nothing attends to it.

    Args:
        batch: B encoded examples.
        pad_id: Token id written into padding.
        width: Most tokens per row (``data.max_length``).

    Returns:
        ``input_ids``, ``labels``, ``position_ids``: (R, T) long with R <= B rows and T the longest
        row; ``tokens``: () long, the number of example tokens.
    """
    lengths = [len(e.input_ids) for e in batch]
    rows = pack_rows(lengths, width)
    longest = max(sum(lengths[i] for i in row) for row in rows)
    ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), longest), IGNORE_INDEX, dtype=torch.long)
    positions = torch.empty((len(rows), longest), dtype=torch.long)
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            n = lengths[i]
            ids[r, at : at + n] = torch.tensor(batch[i].input_ids)
            labels[r, at : at + n] = torch.tensor(batch[i].labels)
            positions[r, at : at + n] = torch.arange(n)
            at += n
        positions[r, at:] = torch.arange(longest - at)
    return {"input_ids": ids, "labels": labels, "position_ids": positions, "tokens": torch.tensor(sum(lengths))}
