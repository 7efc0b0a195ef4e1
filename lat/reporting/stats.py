"""Intervals for the rates lat reports: Wilson for one rate, paired bootstrap for a difference.

Safety and utility rates come from a few dozen prompts, so a difference of one or two prompts
is noise. :func:`wilson_interval` bounds a single rate (safe rate, accuracy); when two methods
are evaluated on the same prompts, :func:`paired_bootstrap` resamples prompts (keeping each
prompt's pair of outcomes together) and bounds the difference of the two rates. With several
training seeds, a prompt's outcome is its mean over seeds, so the interval covers prompt
sampling; the seeds' spread is reported beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

Z95 = 1.959963984540054
"""Two-sided 95 % standard-normal quantile."""


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial rate.

    Args:
        successes: Number of successes (may be fractional when pooled from averaged outcomes).
        n: Number of trials (> 0).
        z: Normal quantile (1.96 for 95 %).

    Returns:
        (low, high), both in [0, 1].
    """
    if n <= 0:
        raise ValueError("wilson_interval: n must be > 0")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Difference:
    """``b - a`` for paired outcomes, with its bootstrap interval.

    Attributes:
        delta: Mean of b minus mean of a.
        low: Lower bound of the interval.
        high: Upper bound.
        n: Number of paired prompts.
    """

    delta: float
    low: float
    high: float
    n: int

    @property
    def significant(self) -> bool:
        """The interval excludes 0."""
        return self.low > 0 or self.high < 0


def paired_bootstrap(a: Sequence[float], b: Sequence[float], n_boot: int = 10_000, level: float = 0.95, seed: int = 0) -> Difference:
    """Percentile bootstrap interval of ``mean(b) - mean(a)`` over paired items.

    Args:
        a: (N,) per-prompt outcomes of the first method (1 = safe / correct, or a mean over seeds).
        b: (N,) outcomes of the second method on the same prompts, same order.
        n_boot: Bootstrap resamples.
        level: Coverage of the interval.
        seed: Seed of the resampling (results are reproducible).

    Returns:
        The difference and its interval.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) == 0:
        raise ValueError("paired_bootstrap: a and b must be non-empty and of the same length")
    d = y - x
    idx = np.random.default_rng(seed).integers(0, len(d), size=(n_boot, len(d)))
    means = d[idx].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail], method="inverted_cdf")
    return Difference(float(d.mean()), float(low), float(high), len(d))
