"""Antidote (Huang et al., 2025, "Antidote: Post-fine-tuning Safety Alignment for Large Language
Models against Harmful Fine-tuning"), one-shot pruning after fine-tuning, as in the authors'
reference code.

Every LoRA matrix (each adapted layer's ``lora_A`` and ``lora_B``, as linear maps) is scored on
harmful calibration sequences with the Wanda score

    S_ij = |W_ij| * sqrt(s_j),   s_j = (1 / N) sum_n sum_t x_{n,t,j}^2

where x are the matrix's inputs (the layer input for A; A's output for B) over the N calibration
sequences' tokens (padding excluded). Within each row of W, the top ``share`` of the entries by
score (``in - int(in * (1 - share))`` of them) are the harmful weights: they are set to 0, every
other weight stays as trained. The result is still a peft adapter.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

import torch
from torch import nn

from lat.models.safelora import lora_layers


def lora_matrices(model: nn.Module) -> dict[str, nn.Linear]:
    """name -> every LoRA matrix of ``model`` (``<layer>.lora_A`` / ``<layer>.lora_B`` linears)."""
    out: dict[str, nn.Linear] = {}
    for name, layer in lora_layers(model).items():
        out[f"{name}.lora_A"] = layer.lora_A["default"]
        out[f"{name}.lora_B"] = layer.lora_B["default"]
    return out


class InputNorms:
    """Accumulates s_j = (1 / N) sum_n sum_t x_{n,t,j}^2 of one linear map's inputs, one sequence at a time."""

    def __init__(self, width: int):
        self.sums = torch.zeros(width)
        self.sequences = 0

    def add(self, x: torch.Tensor) -> None:
        """x: (T, width), one sequence's inputs at its real (unpadded) tokens."""
        self.sums += x.detach().float().pow(2).sum(0).cpu()
        self.sequences += 1

    @property
    def mean(self) -> torch.Tensor:
        """(width,) s."""
        return self.sums / max(1, self.sequences)


@contextlib.contextmanager
def recorded_inputs(matrices: dict[str, nn.Linear], mask: list[torch.Tensor]) -> Iterator[dict[str, InputNorms]]:
    """Forward hooks adding each matrix's inputs to its :class:`InputNorms`; ``mask[0]`` is the
    current batch's (B, T) attention mask, set by the caller before each forward pass."""
    norms = {n: InputNorms(m.in_features) for n, m in matrices.items()}

    def hook(name: str):
        def record(module, inputs, output):
            x, keep = inputs[0], mask[0].bool()
            for row in range(x.shape[0]):
                norms[name].add(x[row][keep[row]])

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in matrices.items()]
    try:
        yield norms
    finally:
        for h in handles:
            h.remove()


def wanda_scores(weight: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    """(out, in) |W| * sqrt(s), s (in,)."""
    return weight.detach().float().abs() * norms.sqrt().to(weight.device).unsqueeze(0)


def harmful_mask(scores: torch.Tensor, share: float) -> torch.Tensor:
    """(out, in) bool: per row, the entries outside the ``int(in * (1 - share))`` lowest scores
    (ties broken by a stable sort)."""
    keep = int(scores.shape[1] * (1 - share))
    order = torch.sort(scores, dim=-1, stable=True).indices
    mask = torch.ones_like(scores, dtype=torch.bool)
    mask.scatter_(1, order[:, :keep], False)
    return mask


@torch.no_grad()
def antidote(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], share: float = 0.1) -> dict[str, int]:
    """Zero the harmful share of every LoRA matrix of ``model`` in place (module docstring).

    Args:
        model: The fine-tuned peft model.
        batches: Calibration batches (``input_ids``, ``attention_mask``: (B, T)).
        share: The share of each row's weights removed (the paper's 0.1).

    Returns:
        matrix name -> how many weights were set to 0.
    """
    matrices = lora_matrices(model)
    was_training = model.training
    model.eval()
    mask: list[torch.Tensor] = []
    try:
        with recorded_inputs(matrices, mask) as norms:
            for batch in batches:
                mask[:] = [batch["attention_mask"]]
                model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    finally:
        model.train(was_training)
    zeroed = {}
    for name, linear in matrices.items():
        harmful = harmful_mask(wanda_scores(linear.weight, norms[name].mean), share)
        linear.weight[harmful] = 0
        zeroed[name] = int(harmful.sum())
    return zeroed
