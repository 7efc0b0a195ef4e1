"""Per-position token-distribution divergence between the tuned model and its reference.

Position t = 1, 2, ... counts answer tokens (the first answer token is position 1). For each
answer token the full next-token distributions of the reference (p_ref) and the tuned model
(p_theta) are compared:

* ``kl``         KL(p_ref || p_theta) = sum_v p_ref(v) (log p_ref(v) - log p_theta(v))
* ``reverse_kl`` KL(p_theta || p_ref)
* ``dlogp``      log p_theta(y_t) - log p_ref(y_t) for the target token y_t

and averaged over examples per position with masked sums (no sentinels, no loops over tokens).
Sums and counts are returned separately so batches accumulate exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from lat.data.chat import IGNORE_INDEX

METRICS = ("kl", "reverse_kl", "dlogp")


def shift_targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets aligned with the logits that predict them.

    Args:
        labels: (B, T) token ids with -100 on prompt and padding.

    Returns:
        ``targets`` (B, T) where ``targets[:, i]`` is the token predicted by ``logits[:, i]``
        (-100 in the last column), and the boolean answer mask (B, T).
    """
    targets = torch.full_like(labels, IGNORE_INDEX)
    targets[:, :-1] = labels[:, 1:]
    return targets, targets != IGNORE_INDEX


def answer_positions(mask: torch.Tensor) -> torch.Tensor:
    """1-based position of each answer token within its answer (0 off the answer).

    An answer is a run of consecutive answer targets: the trained tokens of one example are
    contiguous, and two examples packed into one row are separated by the next one's prompt.

    Args:
        mask: (B, T) bool, True on (shifted) answer targets.

    Returns:
        (B, T) long.
    """
    count = torch.cumsum(mask.long(), dim=1)
    before = torch.cummax(torch.where(mask, torch.zeros_like(count), count), dim=1).values  # count at the last gap
    return (count - before) * mask.long()


def token_divergence(ref_logits: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Divergence for N selected tokens.

    Args:
        ref_logits: (N, V) reference logits.
        logits: (N, V) tuned-model logits.
        targets: (N,) target token ids.

    Returns:
        ``kl``, ``reverse_kl``, ``dlogp``: each (N,) float32.
    """
    ref_lp = F.log_softmax(ref_logits.float(), dim=-1)
    lp = F.log_softmax(logits.float(), dim=-1)
    return {
        "kl": (ref_lp.exp() * (ref_lp - lp)).sum(-1),
        "reverse_kl": (lp.exp() * (lp - ref_lp)).sum(-1),
        "dlogp": (lp - ref_lp).gather(-1, targets[:, None]).squeeze(-1),
    }


def select_positions(labels: torch.Tensor, max_positions: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where to read logits for answer positions 1..max_positions.

    Args:
        labels: (B, T) labels with -100 off the answer.
        max_positions: Largest answer position kept.

    Returns:
        ``index`` (N, 2) (row, column) of the logits to compare, ``targets`` (N,) their target
        tokens, ``positions`` (N,) their 1-based answer positions.
    """
    targets, mask = shift_targets(labels)
    pos = answer_positions(mask)
    keep = mask & (pos <= max_positions)
    index = keep.nonzero()
    return index, targets[keep], pos[keep]


def position_sums(values: dict[str, torch.Tensor], positions: torch.Tensor, max_positions: int) -> dict[str, torch.Tensor]:
    """Per-position sums of each metric and the count of tokens at each position.

    Args:
        values: metric -> (N,) values.
        positions: (N,) 1-based positions, each in 1..max_positions.
        max_positions: T.

    Returns:
        metric -> (T,) sums, plus ``count`` -> (T,) float counts.
    """
    idx = positions - 1
    out = {k: torch.zeros(max_positions, dtype=torch.float64, device=v.device).index_add_(0, idx, v.double()) for k, v in values.items()}
    out["count"] = torch.zeros(max_positions, dtype=torch.float64, device=positions.device).index_add_(0, idx, torch.ones_like(idx, dtype=torch.float64))
    return out


@dataclass
class DivergenceAccumulator:
    """Accumulates per-position sums over batches; :meth:`means` gives the curve.

    Attributes:
        max_positions: T, the positions 1..T reported.
        sums: metric -> (T,) float64 running sums (``count`` included).
    """

    max_positions: int
    sums: dict[str, torch.Tensor] = field(default_factory=dict)

    def add(self, batch_sums: dict[str, torch.Tensor]) -> None:
        """Add the output of :func:`position_sums` for one batch."""
        for k, v in batch_sums.items():
            v = v.detach().cpu()
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()

    def means(self) -> dict[str, list[float | None]]:
        """metric -> T means (None where no example reaches that position), plus ``count``."""
        count = self.sums.get("count", torch.zeros(self.max_positions, dtype=torch.float64))
        out: dict[str, list] = {"count": [int(c) for c in count.tolist()]}
        for k in METRICS:
            s = self.sums.get(k, torch.zeros(self.max_positions, dtype=torch.float64))
            out[k] = [float(a / c) if c > 0 else None for a, c in zip(s.tolist(), count.tolist())]
        return out
