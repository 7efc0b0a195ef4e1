"""The named choices of training: losses and learning-rate schedules. Importable without torch, so
``lat config`` checks a config in a second; a loss's code is imported when it is built."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lat.core.registry import Registry

LOSSES: Registry[Callable[[Any], Any]] = Registry("loss", setting="train.loss")
"""``train.loss`` -> build the loss from the training config; registered with ``needs_reference``:
whether the loss reads the reference model's logits."""
LOSSES.add_lazy("ce", "lat.models.losses:build_ce", needs_reference=False)
LOSSES.add_lazy("constrained", "lat.models.losses:build_constrained", needs_reference=True)

PACKING_KERNELS = (None, "sdpa", "eager", "flex_attention")
"""``model.attn_implementation`` values whose masks honour position-id packing (None = default):
flash attention reads the packing only from a single-row batch."""

SCHEDULES: Registry[str] = Registry("schedule", setting="train.schedule")
"""``train.schedule`` -> the transformers scheduler name."""
SCHEDULES.add("constant", "constant_with_warmup")
SCHEDULES.add("linear", "linear")
SCHEDULES.add("cosine", "cosine")

DEFENSES: Registry[Callable[..., Any] | None] = Registry("defense", setting="defense.name")
"""``defense.name`` -> (peft model, tokenizer, config, unaligned-base config) -> (details, metrics),
applied after fine-tuning (:mod:`lat.workflows.defend`); registered with ``needs``: what the
defense needs of the run."""
DEFENSES.add("none", None, needs=())
DEFENSES.add_lazy("safelora", "lat.workflows.defend:safelora", needs=("lora", "unaligned base"))
DEFENSES.add_lazy("antidote", "lat.workflows.defend:antidote", needs=("lora", "unaligned base", "calibration"))
DEFENSES.add("backdoor_align", None, needs=("trigger",))  # data and evaluation only: nothing after fit
DEFENSES.add("lisa", None, needs=("alignment states",))  # during training: lat.callbacks.lisa
