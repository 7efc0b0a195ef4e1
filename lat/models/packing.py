"""Whether a model keeps packed examples apart (``data.packing``).

Packing relies on transformers building a block-diagonal causal mask from position ids that
restart at every example. Not every model or attention kernel does: flash attention reads the
packing only from a single-row batch, and some model families never pass position ids to their
mask. :func:`packing_leak` measures it on the model itself, before training starts.
"""

from __future__ import annotations

import torch

LEAK_TOLERANCE = 1e-2
"""Largest logit difference (relative to the logits' scale) still read as rounding, not leakage."""


def packing_leak(model: torch.nn.Module, vocab_size: int) -> float:
    """Largest logit difference of an example scored alone and packed behind another, in a
    two-row packed batch, relative to the largest logit.

    Args:
        model: A causal LM (peft-wrapped or not); put in eval mode for the check.
        vocab_size: Token ids are drawn below this.

    Returns:
        0 for a model that keeps packed examples apart, up to rounding.
    """
    gen = torch.Generator().manual_seed(0)
    first, second, other = (torch.randint(0, vocab_size, (n,), generator=gen) for n in (7, 5, 9))
    ids = torch.stack([torch.cat([first, second]), torch.cat([other, other[:3]])])
    positions = torch.stack([torch.cat([torch.arange(7), torch.arange(5)]), torch.cat([torch.arange(9), torch.arange(3)])])
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            packed = model(input_ids=ids.to(device), position_ids=positions.to(device), use_cache=False).logits[0, 7:].float()
            alone = model(input_ids=second[None].to(device), use_cache=False).logits[0].float()
    finally:
        model.train(was_training)
    return float((packed - alone).abs().max() / alone.abs().max().clamp(min=1e-6))
