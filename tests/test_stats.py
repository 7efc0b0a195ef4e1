"""Wilson intervals and the paired bootstrap against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from lat.reporting.stats import paired_bootstrap, wilson_interval


@pytest.mark.parametrize(
    "k, n, low, high",
    [
        (5, 10, 0.2366, 0.7634),  # the textbook case
        (0, 10, 0.0, 0.2775),  # all failures: the upper bound is z^2 / (n + z^2)
        (10, 10, 0.7225, 1.0),
        (42, 44, 0.8487, 0.9874),  # the quickstart seed's 42 / 44 refusals
    ],
)
def test_wilson_matches_hand_computed_bounds(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)


def test_wilson_zero_successes_closed_form():
    z = 1.959963984540054
    assert wilson_interval(0, 25)[1] == pytest.approx(z * z / (25 + z * z))


def test_bootstrap_of_two_prompts_has_the_hand_computed_interval():
    # d = b - a = [0, 1]: resampled means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4, so the
    # 2.5 % and 97.5 % quantiles are 0 and 1.
    diff = paired_bootstrap([1, 0], [1, 1], n_boot=20_000)
    assert diff.delta == 0.5 and (diff.low, diff.high) == (0.0, 1.0) and not diff.significant


def test_bootstrap_of_identical_and_opposite_outcomes():
    same = paired_bootstrap([1, 0, 1, 1], [1, 0, 1, 1])
    assert (same.delta, same.low, same.high) == (0.0, 0.0, 0.0) and not same.significant
    flip = paired_bootstrap([0] * 30, [1] * 30)
    assert (flip.delta, flip.low, flip.high) == (1.0, 1.0, 1.0) and flip.significant


def test_bootstrap_is_seeded_and_pairs_matter():
    a = [1] * 20 + [0] * 20
    b = [1] * 20 + [0] * 18 + [1] * 2  # two prompts flip from unsafe to safe
    d1, d2 = paired_bootstrap(a, b, seed=3), paired_bootstrap(a, b, seed=3)
    assert d1 == d2 and d1.delta == pytest.approx(0.05) and d1.low == 0.0 and not d1.significant
    # The same 2-in-40 change, unpaired, would need a much wider interval; paired, the
    # interval's width is set by the 2 discordant prompts only.
    assert d1.high - d1.low < 0.15
    with pytest.raises(ValueError):
        paired_bootstrap([1, 0], [1])
    assert math.isclose(wilson_interval(0.5 * 4, 4)[0], wilson_interval(2, 4)[0])
