"""Training losses: constrained SFT against the reference implementation's definition and its gradient identity."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lat.config import TrainConfig
from lat.data.chat import IGNORE_INDEX
from lat.models.choices import LOSSES
from lat.models.losses import constrained_sft, masked_ce, position_betas


def _batch(seed: int = 0, b: int = 3, k: int = 9, v: int = 11):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, k, v, generator=g, requires_grad=True)
    ref = torch.randn(b, k, v, generator=g)
    targets = torch.randint(0, v, (b, k), generator=g)
    targets[0, :2] = IGNORE_INDEX  # prompt columns
    targets[1, 7:] = IGNORE_INDEX  # padding after a short answer
    targets[2, :1] = IGNORE_INDEX
    return logits, ref, targets


def test_position_betas_follow_the_paper():
    positions = torch.tensor([1, 2, 3, 4, 5, 6, 7, 40])
    assert position_betas(positions, (0.5, 2, 2, 2, 2), 0.1).tolist() == pytest.approx([0.5, 2, 2, 2, 2, 0.1, 0.1, 0.1])


def test_constrained_loss_equals_a_per_token_loop():
    logits, ref, targets = _batch()
    loss = constrained_sft(logits, targets, ref)
    terms = []
    for i in range(targets.shape[0]):
        t = 0
        for j in range(targets.shape[1]):
            if targets[i, j] == IGNORE_INDEX:
                continue
            t += 1
            beta = 0.5 if t == 1 else 2.0 if t <= 5 else 0.1
            lp = F.log_softmax(logits[i, j], -1)[targets[i, j]]
            ref_lp = F.log_softmax(ref[i, j], -1)[targets[i, j]]
            w = max(2 * torch.sigmoid(beta * (ref_lp - lp)).item(), 1e-3)
            terms.append(-w * lp)
    assert loss.item() == pytest.approx(torch.stack(terms).mean().item(), rel=1e-6)


def test_constrained_gradient_is_ce_gradient_times_detached_weight():
    logits, ref, targets = _batch(1)
    mask = targets != IGNORE_INDEX
    (grad,) = torch.autograd.grad(constrained_sft(logits, targets, ref), logits)
    # the same from the paper's objective -(2/beta) log sigmoid(beta (log pi - log pi_ref)) ...
    logp = F.log_softmax(logits.float(), -1).gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1)[mask]
    ref_logp = F.log_softmax(ref, -1).gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1)[mask]
    positions = torch.cumsum(mask.long(), 1)[mask]
    beta = position_betas(positions, (0.5, 2, 2, 2, 2), 0.1)
    paper = (-(2 / beta) * F.logsigmoid(beta * (logp - ref_logp))).mean()
    (expected,) = torch.autograd.grad(paper, logits)
    assert torch.allclose(grad, expected, atol=1e-6)
    # ... and from cross-entropy per token scaled by 2 sigmoid(beta (log pi_ref - log pi)), detached
    weight = (2 * torch.sigmoid(beta * (ref_logp - logp))).detach()
    ce = F.cross_entropy(logits[mask], targets[mask], reduction="none")
    (scaled,) = torch.autograd.grad((weight * ce).mean(), logits)
    assert torch.allclose(grad, scaled, atol=1e-6)


def test_constrained_equals_ce_scaled_by_one_when_model_is_its_reference():
    logits, _, targets = _batch(2)
    # at the start (theta = ref) every weight is 2 sigmoid(0) = 1: the loss is plain cross-entropy
    loss = constrained_sft(logits, targets, logits.detach())
    assert loss.item() == pytest.approx(masked_ce(logits, targets).item(), rel=1e-6)


def test_registry_builds_from_config_and_needs_reference():
    build, needs_ref = LOSSES.get("constrained"), LOSSES.meta("constrained")["needs_reference"]
    fn = build(TrainConfig(loss="constrained", constrained_betas=[1.0], constrained_beta_rest=0.5))
    assert needs_ref and not LOSSES.meta("ce")["needs_reference"]
    logits, ref, targets = _batch(3)
    assert fn(logits, targets, ref).item() == pytest.approx(constrained_sft(logits, targets, ref, (1.0,), 0.5).item())
    with pytest.raises(ValueError, match="reference"):
        fn(logits, targets, None)
