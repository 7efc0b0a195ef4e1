"""Training losses on answer tokens (registered by name in :data:`lat.models.choices.LOSSES`, selected by ``train.loss``).

Every loss takes ``logits`` (B, K, V) at the K kept columns, ``targets`` (B, K) with -100 off
the answer, and the reference's logits at the same columns (None unless the loss needs them).

* ``ce``: mean cross-entropy over answer tokens.
* ``constrained``: the token-wise constrained objective of Qi et al. 2024 ("Safety alignment
  should be made more than just a few tokens deep", arXiv 2406.05946), as in their reference
  implementation: per answer token, with Δ = log π_θ(y_t) − log π_ref(y_t) and β_t by the
  token's position in its answer (β_1 = 0.5, β_2..5 = 2, β_t>5 = 0.1 by default),

      loss_t = −w_t · log π_θ(y_t),   w_t = stopgrad(max(2 σ(−β_t Δ), w_min)),

  averaged over the batch's answer tokens. Its gradient is that of −(2/β_t) log σ(β_t Δ) (the
  objective in the paper) wherever w_t > w_min: cross-entropy's gradient scaled by w_t.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from lat.config import TrainConfig
from lat.data.chat import IGNORE_INDEX
from lat.models.divergence import answer_positions

LossFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def masked_ce(logits: torch.Tensor, targets: torch.Tensor, ref_logits: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy over answer tokens.

    Args:
        logits: (B, K, V) logits at the K kept columns.
        targets: (B, K) the tokens they predict, -100 off the answer.
        ref_logits: unused (the signature is shared by every loss in :data:`lat.models.choices.LOSSES`).

    Returns:
        Scalar loss (mean over the batch's answer tokens).
    """
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N,) log-probabilities of the N answer targets (row-major order), from (B, K, V) logits."""
    mask = targets != IGNORE_INDEX
    return -F.cross_entropy(logits[mask].float(), targets[mask], reduction="none")


def position_betas(positions: torch.Tensor, first: Sequence[float], rest: float) -> torch.Tensor:
    """β for each token by its 1-based answer position: ``first[t-1]`` for t <= len(first), else ``rest``.

    Args:
        positions: (N,) long, each >= 1.
        first: β for positions 1..len(first).
        rest: β for later positions.

    Returns:
        (N,) float32.
    """
    table = torch.tensor([*first, rest], dtype=torch.float32, device=positions.device)
    return table[(positions - 1).clamp(max=len(first))]


def constrained_weights(logp: torch.Tensor, ref_logp: torch.Tensor, beta: torch.Tensor, min_weight: float) -> torch.Tensor:
    """w = max(2 σ(β (log π_ref − log π_θ)), min_weight), detached; all (N,)."""
    return (2 * torch.sigmoid(beta * (ref_logp - logp))).detach().clamp(min=min_weight)


def constrained_sft(
    logits: torch.Tensor,
    targets: torch.Tensor,
    ref_logits: torch.Tensor | None,
    first: Sequence[float] = (0.5, 2.0, 2.0, 2.0, 2.0),
    rest: float = 0.1,
    min_weight: float = 1e-3,
) -> torch.Tensor:
    """The token-wise constrained SFT loss (module docstring); scalar mean over answer tokens.

    Args:
        logits: (B, K, V) tuned-model logits.
        targets: (B, K) targets, -100 off the answer; each row's answer tokens in order.
        ref_logits: (B, K, V) reference logits at the same columns (required).
        first: β for answer positions 1..len(first).
        rest: β for later positions.
        min_weight: Floor of the per-token weight (the reference implementation's 1e-3).
    """
    if ref_logits is None:
        raise ValueError("constrained_sft needs the reference logits")
    mask = targets != IGNORE_INDEX
    positions = answer_positions(mask)[mask]
    logp = token_logprobs(logits, targets)
    with torch.no_grad():
        ref_logp = token_logprobs(ref_logits, targets)
    weight = constrained_weights(logp, ref_logp, position_betas(positions, first, rest), min_weight)
    return -(weight * logp).mean()


def build_ce(cfg: TrainConfig) -> LossFn:
    """The plain answer-token cross-entropy (``train.loss=ce``)."""
    return masked_ce


def build_constrained(cfg: TrainConfig) -> LossFn:
    """Constrained SFT with the betas of ``cfg`` (``train.loss=constrained``)."""
    return functools.partial(constrained_sft, first=tuple(cfg.constrained_betas), rest=cfg.constrained_beta_rest, min_weight=cfg.constrained_min_weight)
