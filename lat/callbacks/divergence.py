"""DivergenceMonitor: per-position divergence from the reference on probe sets during training.

At the start of training (step 0, where LoRA's divergence is exactly 0), every
``train.divergence_every_n_steps`` steps and at each epoch end, it runs every probe set through
the tuned model and its reference, and

* logs ``val/kl/pos_01`` ... for the first (primary) probe set and ``val/<name>/kl/pos_01`` ...
  for the others (also ``reverse_kl`` and ``dlogp``);
* rewrites ``divergence.csv`` in the run folder (atomically) with one row per
  (epoch, step, probe, position);
* sends each curve to W&B as a line plot and a table when a W&B logger is attached.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from lat.core.fileio import write_text
from lat.models.divergence import METRICS, DivergenceAccumulator, position_sums, select_positions

CSV_FIELDS = ["epoch", "step", "probe", "position", "count", *METRICS]


def zero_sums(labels, max_positions: int) -> dict:
    """Per-position sums of a batch whose divergence is identically zero (counts only)."""
    _, _, positions = select_positions(labels, max_positions)
    zeros = torch.zeros(positions.shape, dtype=torch.float64)
    return position_sums({m: zeros for m in METRICS}, positions, max_positions)


def metric_key(probe: str, primary: bool, metric: str, position: int) -> str:
    """``val/kl/pos_01`` for the primary probe set, ``val/<probe>/kl/pos_01`` otherwise."""
    scope = "val" if primary else f"val/{probe}"
    return f"{scope}/{metric}/pos_{position:02d}"


class ReferenceCache:
    """Reference logits of probe batches, kept up to a byte budget.

    The reference (adapters disabled, or the frozen copy) does not change while training, and
    probe loaders yield the same batches in the same order, so each batch's reference logits are
    computed once. An entry is used only for the very batch (same input ids, attention mask and
    labels) it was made from.

    Args:
        budget_bytes: Most bytes of logits kept (0 = keep nothing).
    """

    def __init__(self, budget_bytes: int):
        self.budget = budget_bytes
        self.used = 0
        self._entries: dict[tuple, tuple[tuple[torch.Tensor, ...], torch.Tensor]] = {}

    def get(self, key: tuple, batch: tuple[torch.Tensor, ...]) -> torch.Tensor | None:
        """The cached (N, V) logits for ``key`` if made from these (B, T) ``batch`` tensors."""
        entry = self._entries.get(key)
        if entry is None or len(entry[0]) != len(batch) or not all(map(torch.equal, entry[0], batch)):
            return None
        return entry[1]

    def put(self, key: tuple, batch: tuple[torch.Tensor, ...], logits: torch.Tensor) -> None:
        """Keep ``logits`` (N, V) for ``key``, made from the (B, T) ``batch`` tensors, if they fit
        in the budget."""
        size = logits.numel() * logits.element_size()
        if key not in self._entries and self.used + size <= self.budget:
            self._entries[key] = (tuple(t.clone() for t in batch), logits)
            self.used += size


_SHARED: dict[str, ReferenceCache] = {}


def shared_reference_cache(reference: str, budget_bytes: int) -> ReferenceCache:
    """The process's cache for the reference model identified by ``reference``.

    Fine-tunings that start from the same model and measure the same probe sets (the methods of
    one ``lat run``, the points of an in-process sweep) share their reference logits, so only
    the first computes them. One reference is kept at a time: asking for another (or another
    budget) starts an empty cache and frees the old one.

    Args:
        reference: Everything the reference logits depend on besides the batch (model, dtype,
            precision, kernel, device), as a string.
        budget_bytes: Most bytes of logits kept.
    """
    key = f"{reference}|{budget_bytes}"
    if key not in _SHARED:
        _SHARED.clear()
        _SHARED[key] = ReferenceCache(budget_bytes)
    return _SHARED[key]


class DivergenceMonitor(L.Callback):
    """Measure and record the per-position divergence on probe sets.

    Args:
        loaders: probe name -> loader of inference-format batches (the first is primary).
        every_n_steps: Interval in optimizer steps (0 = only at start and epoch ends).
        max_positions: Answer positions 1..T reported.
        csv_path: Where ``divergence.csv`` goes (None = keep rows in memory only).
        reference_cache_mb: Budget for the probe batches' reference logits (see
            :class:`ReferenceCache`); measurements after the first then run only the tuned model.
        reference_cache: A cache to use instead of a new one of ``reference_cache_mb`` (see
            :func:`shared_reference_cache`).
    """

    def __init__(
        self,
        loaders: dict[str, DataLoader],
        every_n_steps: int,
        max_positions: int,
        csv_path: Path | None,
        reference_cache_mb: int = 1024,
        reference_cache: ReferenceCache | None = None,
    ):
        self.loaders = loaders
        self.every_n_steps = every_n_steps
        self.max_positions = max_positions
        self.csv_path = csv_path
        self.rows: list[dict] = []
        self.latest: dict[str, dict[str, list]] = {}
        self._done_at: int | None = None
        self.epochs_ended = 0
        self._rank_zero = True
        self._reference = reference_cache if reference_cache is not None else ReferenceCache(reference_cache_mb * 2**20)

    @property
    def last_step(self) -> int | None:
        """Global step of the latest measurement (None before the first)."""
        return self._done_at

    def measure(self, module, probe: str, at_start: bool = False) -> dict[str, list]:
        """Means per position for one probe set (model put in eval mode for the pass).

        At the start of training the tuned model *is* its reference (LoRA's B = 0, or an exact
        frozen copy), so every divergence is exactly 0 and only the token counts are needed;
        ``tests/models/test_training.py`` checks that premise with real forward passes.
        """
        acc = DivergenceAccumulator(self.max_positions)
        was_training = module.training
        module.eval()
        try:
            for i, batch in enumerate(self.loaders[probe]):
                if at_start:
                    acc.add(zero_sums(batch["labels"], self.max_positions))
                    continue
                batch = {k: v.to(module.device) for k, v in batch.items()}
                key = (probe, i, self.max_positions)
                identity = (batch["input_ids"], batch["attention_mask"], batch["labels"])
                reference = self._reference.get(key, identity)
                if reference is None:
                    reference = module.probe_reference(batch, self.max_positions)
                    self._reference.put(key, identity, reference)
                acc.add(module.probe_divergence(batch, self.max_positions, reference))
        finally:
            module.train(was_training)
        return acc.means()

    def run(self, trainer: L.Trainer, module, epoch: int | None = None, again: bool = False) -> dict[str, float]:
        """Measure every probe set now; log, record and return the flat metrics.

        Args:
            epoch: The epoch recorded (default: the trainer's).
            again: Measure even if done at this step, replacing that step's rows (the model
                changed since: a post-hoc defense).
        """
        step = trainer.global_step
        epoch = trainer.current_epoch if epoch is None else epoch
        if (self._done_at == step and not again) or not trainer.is_global_zero:
            return {}
        if again:
            self.rows = [r for r in self.rows if r["step"] != step]
        self._done_at = step
        metrics: dict[str, float] = {}
        for i, probe in enumerate(self.loaders):
            curve = self.measure(module, probe, at_start=step == 0 and not self.rows and not again)
            self.latest[probe] = curve
            for t in range(self.max_positions):
                row = {"epoch": epoch, "step": step, "probe": probe, "position": t + 1, "count": curve["count"][t]}
                row.update({m: curve[m][t] for m in METRICS})
                self.rows.append(row)
                for m in METRICS:
                    if curve[m][t] is not None:
                        metrics[metric_key(probe, i == 0, m, t + 1)] = curve[m][t]
            self._to_wandb(trainer, probe, curve, step)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
        self._write_csv()
        return metrics

    def _write_csv(self) -> None:
        if self.csv_path is None:
            return
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in self.rows)
        write_text(self.csv_path, buf.getvalue())

    def _to_wandb(self, trainer: L.Trainer, probe: str, curve: dict[str, list], step: int) -> None:
        from lightning.pytorch.loggers import WandbLogger

        for logger in trainer.loggers:
            if not isinstance(logger, WandbLogger):
                continue
            import wandb

            positions = list(range(1, self.max_positions + 1))
            table = wandb.Table(columns=["position", *METRICS, "count"])
            for t in range(self.max_positions):
                table.add_data(positions[t], *(curve[m][t] for m in METRICS), curve["count"][t])
            kl = [v if v is not None else float("nan") for v in curve["kl"]]
            logger.experiment.log(
                {
                    f"divergence/{probe}/table": table,
                    f"divergence/{probe}/kl_curve": wandb.plot.line_series(
                        xs=positions, ys=[kl], keys=[f"step {step}"], title=f"KL(ref||tuned) per position: {probe}", xname="answer position"
                    ),
                    # Lightning's WandbLogger plots against this key; an explicit step= would
                    # clash with its own step counter and W&B would drop the data.
                    "trainer/global_step": step,
                }
            )

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: L.Trainer, module, stage: str) -> None:
        self._rank_zero = trainer.is_global_zero

    def on_train_start(self, trainer: L.Trainer, module) -> None:
        if trainer.global_step == 0:
            self.run(trainer, module)
        # Lightning resumes a run checkpointed at an epoch's last step with the next epoch,
        # without that epoch's end hooks: do the missing epoch end here.
        for epoch in range(self.epochs_ended, trainer.current_epoch):
            self._epoch_end(trainer, module, epoch)

    def on_train_batch_end(self, trainer: L.Trainer, module, outputs, batch, batch_idx: int) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self.run(trainer, module)

    def _epoch_end(self, trainer: L.Trainer, module, epoch: int) -> None:
        self.run(trainer, module, epoch)
        self.epochs_ended = epoch + 1

    def on_train_epoch_end(self, trainer: L.Trainer, module) -> None:
        self._epoch_end(trainer, module, trainer.current_epoch)

    def state_dict(self) -> dict:
        return {"rows": self.rows, "epochs_ended": self.epochs_ended}

    def load_state_dict(self, state_dict: dict) -> None:
        """Rows measured before the checkpoint; the latest curves and step follow from them, and
        ``divergence.csv`` is cut back to them (rows after the checkpoint are measured again)."""
        self.rows = list(state_dict.get("rows", []))
        self.epochs_ended = state_dict.get("epochs_ended", 0)
        if self.rows:
            self._done_at = self.rows[-1]["step"]
            for probe in dict.fromkeys(r["probe"] for r in self.rows):
                last = [r for r in self.rows if r["probe"] == probe and r["step"] == self._done_at]
                self.latest[probe] = {k: [r[k] for r in last] for k in ("count", *METRICS)}  # the order of DivergenceAccumulator.means
        if self._rank_zero:
            self._write_csv()
