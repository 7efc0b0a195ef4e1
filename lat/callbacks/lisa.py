"""Lisa (Huang et al., NeurIPS 2024, "Lisa: Lazy Safety Alignment for Large Language Models against
Harmful Fine-tuning"): bi-state optimisation, as in the authors' reference trainer.

Training alternates between an alignment state (``alignment_steps`` steps on alignment data:
harmful requests with refusals) and a task state (``task_steps`` steps on the user's data),
starting with alignment. In the alignment state the step's task batch is replaced by an
alignment batch. Each switch keeps the trainable weights reached at the end of the state that
ends; once 10 % of the run's steps have passed, every step's loss adds the proximal term
rho / 2 * ||theta - theta_switch||^2 towards the weights the *other* state ended with (over
all trainable weights), so the two states stay close to a consensus.
"""

from __future__ import annotations

from typing import Iterator

import lightning as L
import torch
from torch.utils.data import DataLoader

from lat.data.datamodule import EpochSampler

ALIGNMENT, TASK = "alignment", "task"


def phase_lengths(total_steps: int, alignment_steps: int | None, task_steps: int | None) -> tuple[int, int]:
    """(alignment, task) steps per cycle: as given, else the paper's 100 / 900, scaled down to the
    run's length when it has fewer than 1,000 steps (at least one step each)."""
    if alignment_steps is not None and task_steps is not None:
        return alignment_steps, task_steps
    scale = min(1.0, total_steps / 1000)
    a = alignment_steps if alignment_steps is not None else max(1, round(100 * scale))
    t = task_steps if task_steps is not None else max(1, round(900 * scale))
    return a, t


class Lisa(L.Callback):
    """The bi-state schedule and its proximal term (module docstring).

    Args:
        alignment: The alignment examples, encoded (``lengths``, indexable).
        collate: Their collate function.
        batch_size: Alignment examples per step and rank (as the task's ``data.batch_size``).
        seed: Seed of the alignment batches' order (one order per pass over them, sharded over
            DDP ranks as the task data is).
        alignment_steps: Steps per alignment state (None: scaled from the paper's 100).
        task_steps: Steps per task state (None: scaled from the paper's 900).
        rho: Weight of the proximal term (the paper's 1).
        proximal_from: Share of the run's steps before the proximal term starts (the reference's 0.1).
    """

    def __init__(
        self,
        alignment,
        collate,
        batch_size: int,
        seed: int,
        alignment_steps: int | None,
        task_steps: int | None,
        rho: float = 1.0,
        proximal_from: float = 0.1,
    ):
        self.dataset, self.collate, self.batch_size, self.seed = alignment, collate, batch_size, seed
        self.requested = (alignment_steps, task_steps)
        self.rho, self.proximal_from = rho, proximal_from
        self.state, self.clock, self.steps = ALIGNMENT, 0, 0
        self.lengths = (1, 1)
        self.total = 1
        self.anchors: dict[str, dict[str, torch.Tensor]] = {}
        self.loader: DataLoader | None = None
        self._batches: Iterator | None = None
        self._epoch, self._drawn = 0, 0

    # ------------------------------------------------------------------ the schedule
    def _trainable(self, module) -> dict[str, torch.nn.Parameter]:
        return {n: p for n, p in module.named_parameters() if p.requires_grad}

    def _keep(self, module, state: str) -> None:
        self.anchors[state] = {n: p.detach().clone() for n, p in self._trainable(module).items()}

    def next_state(self) -> tuple[str, bool]:
        """(state of the coming step, whether it switches), from the state and step counters."""
        a, t = self.lengths
        length = a if self.state == ALIGNMENT else t
        if self.steps and self.clock % length == 0:
            return (TASK if self.state == ALIGNMENT else ALIGNMENT), True
        return self.state, False

    def _alignment_batch(self, device) -> dict[str, torch.Tensor]:
        """The next alignment batch; a resumed run continues the pass where it stopped."""
        assert self.loader is not None
        if self._batches is None:
            self.loader.sampler.set_epoch(self._epoch)  # type: ignore[attr-defined]  # an EpochSampler
            self._batches = iter(self.loader)
            for _ in range(self._drawn):
                next(self._batches)
        try:
            batch = next(self._batches)
        except StopIteration:
            self._epoch, self._drawn = self._epoch + 1, 0
            self.loader.sampler.set_epoch(self._epoch)  # type: ignore[attr-defined]
            self._batches = iter(self.loader)
            batch = next(self._batches)
        self._drawn += 1
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    # ------------------------------------------------------------------ hooks
    def on_train_start(self, trainer: L.Trainer, module) -> None:
        world, rank = trainer.world_size, trainer.global_rank
        sampler = EpochSampler(self.dataset.lengths, self.batch_size * world, self.seed, group_by_length=False, num_replicas=world, rank=rank)
        # Its own generator: an iterator's base seed would otherwise come from the global stream
        # (dropout), where a resumed run makes its iterators at other steps.
        generator = torch.Generator().manual_seed(self.seed)
        self.loader = DataLoader(self.dataset, batch_size=self.batch_size, sampler=sampler, collate_fn=self.collate, generator=generator)
        self._batches = None
        self.total = max(1, int(trainer.estimated_stepping_batches))
        self.lengths = phase_lengths(self.total, *self.requested)
        if not self.anchors:  # a resumed run has them from its checkpoint
            self._keep(module, ALIGNMENT)
            self._keep(module, TASK)
        module.regularizers = [*[r for r in module.regularizers if r is not self.proximal], self.proximal]

    def on_train_batch_start(self, trainer: L.Trainer, module, batch, batch_idx: int) -> None:
        state, switching = self.next_state()
        if switching:
            self._keep(module, self.state)  # the weights the ending state reached
            self.state, self.clock = state, 0
        if self.state == ALIGNMENT:  # this step trains on alignment data instead
            replacement = self._alignment_batch(module.device)
            batch.clear()
            batch.update(replacement)

    def on_train_batch_end(self, trainer: L.Trainer, module, outputs, batch, batch_idx: int) -> None:
        self.steps += 1
        self.clock += 1
        module.log("lisa/alignment_state", float(self.state == ALIGNMENT))

    def proximal(self, module) -> torch.Tensor | None:
        """rho / 2 * ||theta - anchor||^2 towards the other state's last weights (None in the first
        ``proximal_from`` of the run, or with rho = 0)."""
        if self.rho <= 0 or self.steps <= self.proximal_from * self.total:
            return None
        anchor = self.anchors[TASK if self.state == ALIGNMENT else ALIGNMENT]
        params = self._trainable(module)
        return self.rho / 2 * torch.stack([(params[n] - anchor[n]).pow(2).sum() for n in params]).sum()

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {"state": self.state, "clock": self.clock, "steps": self.steps, "epoch": self._epoch, "drawn": self._drawn, "anchors": self.anchors}

    def load_state_dict(self, state_dict: dict) -> None:
        self.state, self.clock, self.steps = state_dict["state"], state_dict["clock"], state_dict["steps"]
        self._epoch, self._drawn = state_dict.get("epoch", 0), state_dict.get("drawn", 0)
        self.anchors = state_dict.get("anchors", {})
