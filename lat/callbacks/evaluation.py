"""The epoch-end evaluation callbacks.

``SafetyEvalCallback`` and ``UtilityEvalCallback`` run every ``eval.every_n_epochs`` epochs and at
the end of training, on rank 0 only; they log their metrics, send a W&B table of sample
generations, and hand each evaluation to ``record`` (the run folder's ``metrics.json`` and
``samples.jsonl``: :func:`lat.runs.folder.record_eval`).
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

            cols: list[str | int] = [c for c in ("metric", "category", "prompt", "prefix", "response", "reference", "label", "score") if c in samples[0]]
            table = wandb.Table(columns=cols, data=[[s.get(c) for c in cols] for s in samples[:rows]])
            logger.experiment.log({f"samples/{key}": table, "trainer/global_step": step})  # see DivergenceMonitor


class EvalCallback(L.Callback):
    """Run one evaluation on epoch ends and at the end of training (rank 0).

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
        self.history: list[dict] = []

    def run(self, trainer: L.Trainer, module) -> dict:
        """Evaluate the current model now (skipped if already done at this step or not rank 0)."""
        if not trainer.is_global_zero or self._done_at == trainer.global_step:
            return {}
        self._done_at = trainer.global_step
        metrics, samples = self.evaluate(module.model, self.tokenizer)
        numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        for logger in trainer.loggers:
            logger.log_metrics(numeric, step=trainer.global_step)
        _wandb_table(trainer, self.name, samples, self.table_rows, trainer.global_step)
        if self.record is not None:
            self.record(metrics, samples, trainer.current_epoch, trainer.global_step)
        self.history.append({"epoch": trainer.current_epoch, "step": trainer.global_step, **metrics})
        return metrics

    def on_train_epoch_end(self, trainer: L.Trainer, module) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.run(trainer, module)

    def on_train_end(self, trainer: L.Trainer, module) -> None:
        self.run(trainer, module)


class SafetyEvalCallback(EvalCallback):
    """RSR / JSR@k on epoch ends (see :class:`EvalCallback`)."""

    def __init__(self, evaluator: Evaluator, tokenizer, every_n_epochs: int, record: Record | None, table_rows: int = 20):
        super().__init__("safety", evaluator.safety, tokenizer, every_n_epochs, record, table_rows)


class UtilityEvalCallback(EvalCallback):
    """Task utility on epoch ends (see :class:`EvalCallback`)."""

    def __init__(self, evaluator: Evaluator, tokenizer, every_n_epochs: int, record: Record | None, table_rows: int = 20):
        super().__init__("utility", evaluator.utility, tokenizer, every_n_epochs, record, table_rows)
