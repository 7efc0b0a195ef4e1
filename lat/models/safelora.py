"""Safe LoRA (Hsu et al., NeurIPS 2024, "Safe LoRA: the Silver Lining of Reducing Safety Risks when
Finetuning Large Language Models"), post hoc and training-free, as in the authors' reference code.

For each LoRA-adapted linear layer, with W_aligned its weight in the aligned model the fine-tuning
started from (the seed: the adapter's frozen base layer) and W_unaligned the same weight in the
unaligned base the seed was aligned from:

    V = W_aligned - W_unaligned                  (out, in)
    C = V V^T / ||V||_F                          (out, out)
    ΔW = B A,  cos = <C ΔW, ΔW>_F / (||C ΔW||_F ||ΔW||_F)

The layers whose update is least aligned (lowest cos: ``layers`` of them, the paper's 10, or every
layer with cos <= ``threshold``) get B replaced by C B; every other weight stays as trained. The
LoRA scale (alpha / r) multiplies ΔW and C ΔW alike, so it does not change cos. The result is
still a peft adapter. A layer that alignment left unchanged (V = 0) has no aligned direction and
is never projected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


def alignment_matrix(aligned: torch.Tensor, unaligned: torch.Tensor) -> torch.Tensor:
    """C = V V^T / ||V||_F with V = aligned - unaligned; (out, in) weights -> (out, out), fp32."""
    v = aligned.float() - unaligned.float()
    return v @ v.T / torch.linalg.matrix_norm(v)


def projection_cosine(c: torch.Tensor, b: torch.Tensor, a: torch.Tensor) -> float:
    """cos(C B A, B A) over all entries; C (out, out), B (out, r), A (r, in)."""
    delta = b.float() @ a.float()
    return float(torch.nn.functional.cosine_similarity((c @ delta).flatten(), delta.flatten(), dim=0))


@dataclass
class LayerReport:
    """One adapted layer: its name, cos(C ΔW, ΔW) (None where V = 0), whether B was projected."""

    name: str
    cosine: float | None
    projected: bool


def lora_layers(model: nn.Module) -> dict[str, Any]:
    """name -> every LoRA-adapted layer (peft's ``LoraLayer``: lora_A, lora_B, base_layer) of ``model``."""
    return {n: m for n, m in model.named_modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer") and "default" in getattr(m, "lora_A", {})}


def base_weight_name(layer_name: str) -> str:
    """A peft layer's name -> its weight's name in the plain model (``base_model.model.`` dropped)."""
    return layer_name.removeprefix("base_model.model.") + ".weight"


def choose(cosines: dict[str, float | None], layers: int, threshold: float | None) -> set[str]:
    """The layers to project: cos <= ``threshold`` if given, else the ``layers`` lowest cos."""
    known = {n: c for n, c in cosines.items() if c is not None}
    if threshold is not None:
        return {n for n, c in known.items() if c <= threshold}
    return set(sorted(known, key=lambda n: (known[n], n))[:layers])


@torch.no_grad()
def safe_lora(model: nn.Module, unaligned: dict[str, torch.Tensor], layers: int = 10, threshold: float | None = None) -> list[LayerReport]:
    """Project the B of the chosen layers of a peft LoRA ``model`` in place (module docstring).

    Args:
        model: The fine-tuned peft model; its base layers hold the aligned weights.
        unaligned: The unaligned base's state dict (plain names, ``model.layers.0.self_attn.q_proj.weight``).
        layers: How many layers to project (ignored with ``threshold``).
        threshold: Project every layer with cos at or below this instead.

    Returns:
        One report per adapted layer, in the model's order.

    Raises:
        KeyError: An adapted layer has no weight of that name in ``unaligned``.
    """
    found = lora_layers(model)

    def matrix(name: str) -> torch.Tensor:  # built again for the chosen layers: (out, out) each, too large to keep for all
        aligned = found[name].base_layer.weight
        return alignment_matrix(aligned, unaligned[base_weight_name(name)].to(aligned.device))

    cosines: dict[str, float | None] = {}
    for name, layer in found.items():
        c = matrix(name)
        finite = bool(torch.isfinite(c).all())  # V = 0 gives 0 / 0
        cosines[name] = projection_cosine(c, layer.lora_B["default"].weight, layer.lora_A["default"].weight) if finite else None
        del c
    chosen = choose(cosines, layers, threshold)
    for name in chosen:
        weight = found[name].lora_B["default"].weight
        weight.copy_((matrix(name) @ weight.float()).to(weight.dtype))
    return [LayerReport(n, cosines[n], n in chosen) for n in found]
