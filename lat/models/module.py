"""LookAheadModule: a causal LM (LoRA or full) trained on answer tokens, with a frozen reference."""

from __future__ import annotations

import contextlib
import inspect
import random
import time
from typing import Iterator

import lightning as L
import numpy as np
import torch
from torch import nn
from transformers import get_scheduler

from lat.config import TrainConfig
from lat.core.errors import RunStopped, UserError
from lat.data.chat import IGNORE_INDEX
from lat.models.choices import LOSSES, SCHEDULES
from lat.models.divergence import position_sums, select_positions, shift_targets, token_divergence
from lat.models.losses import masked_ce  # noqa: F401 - masked_ce re-exported


def answer_columns(targets: torch.Tensor) -> torch.Tensor:
    """(K,) columns whose logits predict an answer token in at least one row of the batch.

    Only these columns go through the output head: prompt-only columns (often half the batch)
    never need the vocabulary-wide projection and softmax.
    """
    return (targets != IGNORE_INDEX).any(0).nonzero().squeeze(1)


def global_token_share(loss: torch.Tensor, count: torch.Tensor, total: torch.Tensor, world: int) -> torch.Tensor:
    """One DDP rank's token-mean loss, weighted by its share of the global batch's answer tokens.

    DDP averages the ranks' gradients; the average of these weighted losses' gradients is the
    gradient of the mean over all ranks' answer tokens, which one process with the global batch
    computes (plain token means would weight a rank with few answer tokens as much as one with
    many). Their mean over the ranks is that global token mean, the logged ``train/loss``.

    Args:
        loss: Scalar, this rank's mean over its ``count`` answer tokens.
        count: Scalar, this rank's answer tokens.
        total: Scalar, the answer tokens of every rank together.
        world: The number of ranks.
    """
    return loss * count * world / total


def _accepts_logits_to_keep(model: nn.Module) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


class LookAheadModule(L.LightningModule):
    """Fine-tune ``model`` on answer tokens; compare it with its reference on demand.

    Args:
        model: The trainable causal LM (peft-wrapped for LoRA).
        train_cfg: Optimiser, schedule and loss settings.
        frozen_reference: Full fine-tuning only: a frozen copy of the starting model. With LoRA
            leave it None: the reference is ``model`` with adapters disabled (no copy).
    """

    def __init__(self, model: nn.Module, train_cfg: TrainConfig, frozen_reference: nn.Module | None = None):
        super().__init__()
        SCHEDULES.check(train_cfg.schedule)
        self.model = model
        self.frozen_reference = frozen_reference
        self.cfg = train_cfg
        self.loss_fn = LOSSES.get(train_cfg.loss)(train_cfg)
        self.loss_needs_reference = LOSSES.meta(train_cfg.loss)["needs_reference"]
        self.strict_loading = False  # checkpoints hold only the trainable weights
        self._tokens = 0
        self._clock: float | None = None
        self.restored_metrics: dict[str, float] = {}
        self._column_logits = _accepts_logits_to_keep(model)
        self.regularizers: list = []
        """(module) -> a scalar added to each step's objective, or None (a defense's proximal term)."""

    # ------------------------------------------------------------------ forward passes
    def _logits(self, net: nn.Module, batch: dict[str, torch.Tensor], columns: torch.Tensor | None) -> torch.Tensor:
        """(B, K, V) logits of ``net`` at ``columns`` (all T columns when None).

        A packed batch (:func:`lat.data.chat.collate_packed`) has ``position_ids`` and no
        attention mask; transformers then keeps attention within each packed example.
        """
        kwargs = {"input_ids": batch["input_ids"], "use_cache": False}
        kwargs.update({k: batch[k] for k in ("attention_mask", "position_ids") if k in batch})
        if columns is not None and self._column_logits:
            return net(**kwargs, logits_to_keep=columns).logits
        logits = net(**kwargs).logits
        return logits if columns is None else logits[:, columns]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) ids and mask -> (B, T, V) logits of the tuned model."""
        return self._logits(self.model, {"input_ids": input_ids, "attention_mask": attention_mask}, None)

    @contextlib.contextmanager
    def _reference_mode(self) -> Iterator[nn.Module]:
        if self.frozen_reference is not None:
            yield self.frozen_reference
        elif hasattr(self.model, "disable_adapter"):
            with self.model.disable_adapter():
                yield self.model
        else:
            raise RuntimeError("no reference: a full fine-tuning run needs frozen_reference")

    @torch.no_grad()
    def reference_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, columns: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K, V) logits of the reference (adapters disabled, or the frozen copy) at ``columns``."""
        return self._reference_logits({"input_ids": input_ids, "attention_mask": attention_mask}, columns)

    @torch.no_grad()
    def _reference_logits(self, batch: dict[str, torch.Tensor], columns: torch.Tensor | None) -> torch.Tensor:
        with self._reference_mode() as ref:
            return self._logits(ref, batch, columns)

    @staticmethod
    def _probe_columns(batch: dict[str, torch.Tensor], max_positions: int):
        index, targets, positions = select_positions(batch["labels"], max_positions)
        columns, col_of = index[:, 1].unique(return_inverse=True)
        return index[:, 0], columns, col_of, targets, positions

    @torch.no_grad()
    def probe_reference(self, batch: dict[str, torch.Tensor], max_positions: int) -> torch.Tensor:
        """(N, V) reference logits at the N answer tokens in positions 1..max_positions.

        The reference never changes during a run, so callers may keep this and pass it back to
        :meth:`probe_divergence` for the same batch.
        """
        rows, columns, col_of, _, _ = self._probe_columns(batch, max_positions)
        return self.reference_logits(batch["input_ids"], batch["attention_mask"], columns)[rows, col_of]

    @torch.no_grad()
    def probe_divergence(self, batch: dict[str, torch.Tensor], max_positions: int, reference: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per-position divergence sums for one probe batch (see :mod:`lat.models.divergence`).

        Args:
            batch: Probe batch (input_ids, attention_mask, labels: (B, T)).
            max_positions: Answer positions 1..max_positions compared.
            reference: This batch's :meth:`probe_reference` from earlier, or None to compute it.

        Returns:
            metric -> (max_positions,) sums, and ``count``.
        """
        rows, columns, col_of, targets, positions = self._probe_columns(batch, max_positions)
        logits = self._logits(self.model, batch, columns)[rows, col_of]
        if reference is None:
            reference = self.reference_logits(batch["input_ids"], batch["attention_mask"], columns)[rows, col_of]
        return position_sums(token_divergence(reference, logits, targets), positions, max_positions)

    # ------------------------------------------------------------------ steps
    def _step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = self._loss(batch)[0]
        self._check_finite(loss, not torch.isfinite(loss))
        return loss

    def _check_finite(self, loss: torch.Tensor, diverged: bool) -> None:
        if diverged:
            raise RunStopped(f"training diverged: loss is {loss.item()} at step {self.global_step + 1}")

    def _loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss (mean over the batch's answer tokens) and how many answer tokens it averages."""
        targets, _ = shift_targets(batch["labels"])
        # Packed rows hold several answers; keeping every column keeps them apart for the losses
        # that read answer positions (a column subset could join two answers into one run).
        columns = None if "position_ids" in batch else answer_columns(targets)
        logits = self._logits(self.model, batch, columns)
        ref = self._reference_logits(batch, columns) if self.loss_needs_reference else None
        loss = self.loss_fn(logits, targets if columns is None else targets[:, columns], ref)
        return loss, (targets != IGNORE_INDEX).sum()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, count = self._loss(batch)
        self._tokens += int(batch["tokens"] if "tokens" in batch else batch["attention_mask"].sum())
        world = self.trainer.world_size
        if world <= 1:
            self._check_finite(loss, not torch.isfinite(loss))
        else:  # one all-reduce: the global answer tokens, and whether any rank diverged (all stop then)
            local = torch.stack([count.to(loss.device, torch.float32), (~torch.isfinite(loss.detach())).float()])
            total, diverged = self.trainer.strategy.reduce(local, reduce_op="sum")
            self._check_finite(loss, bool(diverged))
            loss = global_token_share(loss, count, total, world)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0], sync_dist=world > 1)
        objective = loss
        for regularizer in self.regularizers:  # the same on every rank: DDP's average keeps it whole
            extra = regularizer(self)
            if extra is not None:
                self.log("train/regularizer", extra.detach(), batch_size=batch["input_ids"].shape[0])
                objective = objective + extra
        return objective

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.log("val/loss", self._step(batch), prog_bar=True, batch_size=batch["input_ids"].shape[0], sync_dist=True)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        now = time.perf_counter()
        if self._clock is not None and now > self._clock:  # summed over the ranks under DDP
            self.log("train/tokens_per_s", float(self._tokens / (now - self._clock)), sync_dist=self.trainer.world_size > 1, reduce_fx="sum")
        self._clock, self._tokens = now, 0
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])

    # ------------------------------------------------------------------ optimiser
    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        fused = all(p.is_cuda for p in params)
        opt = torch.optim.AdamW(params, lr=self.cfg.lr, betas=tuple(self.cfg.betas), weight_decay=self.cfg.weight_decay, fused=fused or None)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = get_scheduler(SCHEDULES.get(self.cfg.schedule), opt, num_warmup_steps=int(self.cfg.warmup_ratio * total), num_training_steps=total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------ checkpoints
    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The module's state restricted to trainable parameters (what checkpoints hold)."""
        names = {f"model.{n}" for n, p in self.model.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.state_dict().items() if k in names}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = self.trainable_state_dict()
        checkpoint["rng"] = rng_state()
        checkpoint["world_size"] = self.trainer.world_size
        if self.trainer.world_size > 1:  # every rank's stream, each resumed by its own rank
            checkpoint["rng_per_rank"] = gather_objects(checkpoint["rng"], self.trainer.world_size)
        # The latest logged values (train/loss, ...): a run resumed after its last step logs none.
        checkpoint["logged"] = {k: float(v) for k, v in self.trainer.callback_metrics.items() if v.numel() == 1}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        ranks, trainer = checkpoint.get("rng_per_rank", []), self._trainer
        saved_world = checkpoint.get("world_size")
        if trainer is not None and saved_world is not None and saved_world != trainer.world_size:
            raise UserError(
                f"checkpoint of {saved_world} training process(es), resumed with {trainer.world_size}: the global batch order and the "
                f"schedule would change; resume with train.devices x train.num_nodes = {saved_world}"
            )
        same_world = trainer is not None and len(ranks) == trainer.world_size
        state = ranks[trainer.global_rank] if same_world else checkpoint.get("rng")
        if state is not None:  # dropout continues with the random stream it stopped in
            set_rng_state(state)
        self.restored_metrics = dict(checkpoint.get("logged", {}))


def gather_objects(obj, world: int) -> list:
    """Every rank's ``obj``, in rank order (a collective: every rank calls it)."""
    import torch.distributed as dist

    out: list = [None] * world
    dist.all_gather_object(out, obj)
    return out


def rng_state() -> dict:
    """Python, numpy and torch (CPU and every CUDA device) random states, in tensors and tuples
    only, so a checkpoint holding them loads with ``torch.load(weights_only=True)``."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
