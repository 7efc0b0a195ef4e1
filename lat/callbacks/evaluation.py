"""The epoch-end evaluation callbacks, and what a checkpoint knows of the records they wrote.

``SafetyEvalCallback`` and ``UtilityEvalCallback`` run every ``eval.every_n_epochs`` epochs and,
through :meth:`EvalCallback.finish`, once more on the final model, on rank 0 only; they log
their metrics, send a W&B table of sample generations, and hand each evaluation to ``record``
(the run folder's ``metrics.json`` and ``samples.jsonl``: :func:`lat.runs.folder.record_eval`).

Resuming never loses or repeats an evaluation: each callback keeps its progress in the
checkpoint, and :class:`RecordLedger` keeps how far the records went, so records written after
the checkpoint (by the process that stopped) are dropped and redone.
"""

from __future__ import annotations

from typing import Callable

import lightning as L

from lat.evaluation.evaluator import Evaluator

Record = Callable[[dict, list, int, int], object]
"""(metrics, samples, epoch, step) -> anything: where an evaluation is kept."""


def _wandb_table(trainer: L.Trainer, key: str, samples: list[dict], rows: int, step: int) -> None:
    from lightning.pytorch.loggers import WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and samples:
            import wandb

            cols: list[str | int] = [
                c
                for c in ("metric", "benchmark", "category", "prompt", "prefix", "response", "reference", "label", "score")
                if any(c in s for s in samples[:rows])
            ]
            table = wandb.Table(columns=cols, data=[[s.get(c) for c in cols] for s in samples[:rows]])
            logger.experiment.log({f"samples/{key}": table, "trainer/global_step": step})  # see DivergenceMonitor


class EvalCallback(L.Callback):
    """Run one evaluation on epoch ends; :meth:`finish` evaluates the final model (rank 0).

    Lightning resumes a run checkpointed at an epoch's last step with the next epoch, without
    that epoch's end hooks; the callback then does the missing epoch end at the start of the
    resumed run (``epochs_ended`` travels in the checkpoint).

    Args:
        name: ``safety`` or ``utility``.
        evaluate: (model, tokenizer) -> (metrics, samples).
        tokenizer: The model's tokenizer.
        every_n_epochs: Interval in epochs.
        record: Keeps each evaluation (None = log only).
        table_rows: Sample generations per W&B table.
    """

    def __init__(self, name: str, evaluate: Callable, tokenizer, every_n_epochs: int, record: Record | None, table_rows: int = 20):
        self.name = name
        self.evaluate = evaluate
        self.tokenizer = tokenizer
        self.every_n_epochs = max(1, every_n_epochs)
        self.record = record
        self.table_rows = table_rows
        self._done_at: int | None = None
        self.epochs_ended = 0

    def run(self, trainer: L.Trainer, module, epoch: int | None = None, after: str | None = None) -> dict:
        """Evaluate the current model now (skipped if already done at this step or not rank 0).

        Args:
            epoch: The epoch recorded (default: the trainer's).
            after: Evaluate even if done at this step, because the model changed since: what
                changed it (a defense's name), recorded as the evaluation's ``after``.
        """
        if not trainer.is_global_zero or (self._done_at == trainer.global_step and after is None):
            return {}
        epoch = trainer.current_epoch if epoch is None else epoch
        self._done_at = trainer.global_step
        metrics, samples = self.evaluate(module.model, self.tokenizer)
        if after is not None:
            metrics = {**metrics, "after": after}
            samples = [{**row, "after": after} for row in samples]
        numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        for logger in trainer.loggers:
            logger.log_metrics(numeric, step=trainer.global_step)
        _wandb_table(trainer, self.name, samples, self.table_rows, trainer.global_step)
        if self.record is not None:
            self.record(metrics, samples, epoch, trainer.global_step)
        return metrics

    def _epoch_end(self, trainer: L.Trainer, module, epoch: int) -> None:
        if (epoch + 1) % self.every_n_epochs == 0:
            self.run(trainer, module, epoch)
        self.epochs_ended = epoch + 1

    def on_train_start(self, trainer: L.Trainer, module) -> None:
        for epoch in range(self.epochs_ended, trainer.current_epoch):  # resumed after an epoch's last step
            self._epoch_end(trainer, module, epoch)

    def on_train_epoch_end(self, trainer: L.Trainer, module) -> None:
        self._epoch_end(trainer, module, trainer.current_epoch)

    def finish(self, trainer: L.Trainer, module, after: str | None = None) -> dict:
        """Evaluate the final model (after ``fit``; skipped if the last epoch end did, unless
        ``after`` names what changed the model since: :meth:`run`)."""
        return self.run(trainer, module, after=after)

    def state_dict(self) -> dict:
        return {"done_at": self._done_at, "epochs_ended": self.epochs_ended}

    def load_state_dict(self, state_dict: dict) -> None:
        self._done_at = state_dict.get("done_at")
        self.epochs_ended = state_dict.get("epochs_ended", 0)

    @property
    def state_key(self) -> str:
        return f"{type(self).__name__}[{self.name}]"


class RecordLedger(L.Callback):
    """Keep in every checkpoint how many records the run folder held when it was saved; on
    resume, cut the records back to that (the resumed run redoes what came after).

    Args:
        count: () -> the record counts now (:func:`lat.runs.folder.record_counts`).
        truncate: counts -> None, cuts the records back (:func:`lat.runs.folder.keep_records`).
    """

    def __init__(self, count: Callable[[], dict], truncate: Callable[[dict], None]):
        self.count, self.truncate = count, truncate
        self._rank_zero = True

    def setup(self, trainer: L.Trainer, module, stage: str) -> None:
        self._rank_zero = trainer.is_global_zero

    def state_dict(self) -> dict:
        return self.count()

    def load_state_dict(self, state_dict: dict) -> None:
        if self._rank_zero:
            self.truncate(state_dict)


class SafetyEvalCallback(EvalCallback):
    """RSR / JSR@k on epoch ends (see :class:`EvalCallback`)."""

    def __init__(self, evaluator: Evaluator, tokenizer, every_n_epochs: int, record: Record | None, table_rows: int = 20):
        super().__init__("safety", evaluator.safety, tokenizer, every_n_epochs, record, table_rows)


class UtilityEvalCallback(EvalCallback):
    """Task utility on epoch ends (see :class:`EvalCallback`)."""

    def __init__(self, evaluator: Evaluator, tokenizer, every_n_epochs: int, record: Record | None, table_rows: int = 20):
        super().__init__("utility", evaluator.utility, tokenizer, every_n_epochs, record, table_rows)
