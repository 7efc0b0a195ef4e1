"""LoRA adapters merged into their base weights while a model only generates, then unmerged with
the base weights restored bit for bit.

An unmerged adapter adds two thin products to every adapted linear layer at every decoding step
(``x A^T B^T``, plus the reads of ``x`` they need); merged, the layer is one product with
``W + s B A``. The result is the same function, not the same floating-point numbers, so greedy
tokens may differ where two logits are nearly tied. peft's ``unmerge`` subtracts the delta again,
which does not give back the original bits (``(W + D) - D != W`` in floating point), so the base
weights are copied before the merge and copied back afterwards: a reference with the adapters
disabled, or the next training step, sees exactly the weights it saw before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from peft.tuners.lora.layer import Linear as LoraLinear


def mergeable_layers(model: torch.nn.Module) -> list[LoraLinear]:
    """The LoRA linear layers of ``model`` whose adapter can be merged exactly as it computes
    unmerged: a plain LoRA (no DoRA or other variant, no LoRA bias), enabled, not merged already,
    one active adapter, base weight a plain tensor of the adapter's own dtype (merging an fp32
    adapter into a bf16 base would round the delta away) and no dropout in effect (eval mode)."""
    layers = []
    for module in model.modules():
        if type(module) is not LoraLinear or module.disable_adapters or module.merged or module.training:
            continue
        active = module.active_adapters
        if len(active) != 1 or active[0] not in module.lora_A or active[0] in module.lora_variant or module.lora_bias[active[0]]:
            continue
        weight = module.get_base_layer().weight
        if type(weight.data) is not torch.Tensor or weight.dtype != module.lora_A[active[0]].weight.dtype:
            continue
        layers.append(module)
    return layers


@contextlib.contextmanager
def merged_lora(model: torch.nn.Module, enabled: bool = True) -> Iterator[int]:
    """Within the block, ``model``'s mergeable LoRA adapters (:func:`mergeable_layers`) are merged
    into their base weights; on leaving it (also on an error) they are unmerged and the base
    weights restored to their exact former values.

    Args:
        model: A peft-wrapped model in eval mode (any other model is left as it is).
        enabled: False: merge nothing.

    Yields:
        How many layers were merged.
    """
    layers = mergeable_layers(model) if enabled else []
    saved = [layer.get_base_layer().weight.detach().clone() for layer in layers]
    merged: list[LoraLinear] = []
    try:
        with torch.no_grad():
            for layer in layers:
                layer.merge()
                merged.append(layer)
        yield len(layers)
    finally:
        with torch.no_grad():
            for layer, weight in zip(merged, saved):
                layer.unmerge()
                layer.get_base_layer().weight.copy_(weight)
