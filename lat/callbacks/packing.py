"""The packing check: a packed run whose model lets examples attend to each other stops before
its first step (:func:`lat.models.packing.packing_leak` measures it on the model itself)."""

from __future__ import annotations

import lightning as L

from lat.core.errors import UserError
from lat.models import packing


class PackingCheck(L.Callback):
    """Before the first step, stop a packed run whose model lets examples attend to each other."""

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size

    def on_fit_start(self, trainer: L.Trainer, module) -> None:
        leak = packing.packing_leak(module.model, self.vocab_size)
        if leak > packing.LEAK_TOLERANCE:
            raise UserError(
                f"data.packing: {type(module.model).__name__} lets packed examples attend to each other "
                f"(logits differ by {leak:.1%} of their scale); use data.packing=false"
            )
