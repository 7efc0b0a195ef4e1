"""Divergence math: vectorised masked means agree with a direct per-example loop."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lat.data.chat import IGNORE_INDEX
from lat.models.divergence import (
    DivergenceAccumulator,
    answer_positions,
    position_sums,
    select_positions,
    shift_targets,
    token_divergence,
)


def _labels():
    # row 0: prompt of 2, answer of 4, padding 2; row 1: prompt of 3, answer of 5
    ids = torch.arange(16).view(2, 8) % 7 + 1
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[0, 2:6] = ids[0, 2:6]
    labels[1, 3:8] = ids[1, 3:8]
    return ids, labels


def test_shift_and_positions():
    _, labels = _labels()
    targets, mask = shift_targets(labels)
    assert targets[0, 1:5].tolist() == labels[0, 2:6].tolist() and targets[0, 5] == IGNORE_INDEX
    assert answer_positions(mask)[0].tolist() == [0, 1, 2, 3, 4, 0, 0, 0]
    assert answer_positions(mask)[1].tolist() == [0, 0, 1, 2, 3, 4, 5, 0]


def _direct_loop(ref, cur, labels, T):
    """Per example, per answer token, plain Python: the definition."""
    sums = {k: [0.0] * T for k in ("kl", "reverse_kl", "dlogp")}
    counts = [0] * T
    for b in range(labels.shape[0]):
        t = 0
        for j in range(1, labels.shape[1]):
            if labels[b, j] == IGNORE_INDEX:
                continue
            t += 1
            if t > T:
                break
            p = F.softmax(ref[b, j - 1].double(), -1)
            q = F.softmax(cur[b, j - 1].double(), -1)
            sums["kl"][t - 1] += float((p * (p.log() - q.log())).sum())
            sums["reverse_kl"][t - 1] += float((q * (q.log() - p.log())).sum())
            y = labels[b, j]
            sums["dlogp"][t - 1] += float(q[y].log() - p[y].log())
            counts[t - 1] += 1
    return {k: [s / c if c else None for s, c in zip(v, counts)] for k, v in sums.items()}, counts


def test_vectorised_equals_direct_loop():
    torch.manual_seed(0)
    _, labels = _labels()
    ref, cur = torch.randn(2, 8, 11), torch.randn(2, 8, 11)
    T = 4
    index, targets, positions = select_positions(labels, T)
    rows, cols = index[:, 0], index[:, 1]
    acc = DivergenceAccumulator(T)
    acc.add(position_sums(token_divergence(ref[rows, cols], cur[rows, cols], targets), positions, T))
    means = acc.means()
    expected, counts = _direct_loop(ref, cur, labels, T)
    assert means["count"] == counts == [2, 2, 2, 2]
    for k in ("kl", "reverse_kl", "dlogp"):
        assert all(math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6) for a, b in zip(means[k], expected[k])), k


def test_positions_beyond_an_answer_are_none_not_zero():
    _, labels = _labels()
    ref = torch.randn(2, 8, 11)
    index, targets, positions = select_positions(labels, 6)
    acc = DivergenceAccumulator(6)
    rows, cols = index[:, 0], index[:, 1]
    acc.add(position_sums(token_divergence(ref[rows, cols], ref[rows, cols], targets), positions, 6))
    means = acc.means()
    assert means["count"] == [2, 2, 2, 2, 1, 0]
    assert means["kl"][:5] == [0.0] * 5 and means["kl"][5] is None


def test_accumulating_batches_equals_one_batch():
    torch.manual_seed(1)
    _, labels = _labels()
    ref, cur = torch.randn(2, 8, 11), torch.randn(2, 8, 11)

    def sums(sl):
        index, targets, positions = select_positions(labels[sl], 5)
        r, c = index[:, 0], index[:, 1]
        return position_sums(token_divergence(ref[sl][r, c], cur[sl][r, c], targets), positions, 5)

    whole, parts = DivergenceAccumulator(5), DivergenceAccumulator(5)
    whole.add(sums(slice(0, 2)))
    parts.add(sums(slice(0, 1)))
    parts.add(sums(slice(1, 2)))
    for k in ("kl", "dlogp", "count"):
        assert torch.allclose(whole.sums[k], parts.sums[k])


def test_kl_is_nonnegative_and_zero_for_equal_logits():
    x = torch.randn(9, 13)
    d = token_divergence(x, x, torch.zeros(9, dtype=torch.long))
    assert torch.equal(d["kl"], torch.zeros(9)) and torch.equal(d["dlogp"], torch.zeros(9))
    d = token_divergence(x, torch.randn(9, 13), torch.zeros(9, dtype=torch.long))
    assert (d["kl"] >= 0).all() and (d["reverse_kl"] >= 0).all()
