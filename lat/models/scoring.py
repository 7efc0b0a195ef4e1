"""Per-token losses of a model on given answers (teacher forcing), e.g. the seed's, for adaptive previews."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from lat.data.chat import collate, encode, pad_token_id
from lat.data.tasks import Example
from lat.models.divergence import shift_targets


@torch.no_grad()
def answer_token_losses(model, tokenizer, examples: Sequence[Example], max_length: int, batch_size: int = 16) -> list[list[float]]:
    """For each example, the model's loss (nats) on each answer token, in order.

    Args:
        model: A causal LM (put in eval mode for the pass, then restored).
        tokenizer: Its tokenizer (chat template).
        examples: N examples with answers.
        max_length: Tokens per example (answers cut from the end, as in training).
        batch_size: Examples per forward pass.

    Returns:
        N lists of floats (empty for an example that does not fit ``max_length``).
    """
    encoded, dropped = encode(tokenizer, examples, max_length)
    gone = set(dropped)
    keep = [i for i in range(len(examples)) if i not in gone]
    out: list[list[float]] = [[] for _ in examples]
    pad = pad_token_id(tokenizer)
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        for start in range(0, len(encoded), batch_size):
            batch = collate(encoded[start : start + batch_size], pad_id=pad)
            logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)).logits
            targets, mask = shift_targets(batch["labels"].to(device))
            nll = F.cross_entropy(logits.float().transpose(1, 2), targets.clamp(min=0), reduction="none")  # (B, T)
            for row, (values, m) in enumerate(zip(nll, mask)):
                out[keep[start + row]] = values[m].tolist()
    finally:
        model.train(was_training)
    return out
