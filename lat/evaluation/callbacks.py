"""Evaluator (what to evaluate, built once from the config) and the epoch-end eval callbacks.

``SafetyEvalCallback`` and ``UtilityEvalCallback`` run every ``eval.every_n_epochs`` epochs and at
the end of training, on rank 0 only; they log their metrics, send a W&B table of sample
generations, and append to the run folder's ``metrics.json`` (``evals`` list + latest values)
and ``samples.jsonl``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import lightning as L

from lat.config import Config
from lat.data.records import RecordSet, read_records
from lat.errors import UserError
from lat.evaluation.benchmarks import HarmfulItem, evaluate_safety, evaluate_utility, load_harmful
from lat.fileio import atomic_write
from lat.rundir import update_metrics

SHIPPED_HARMFUL = "pkg:assets/harmful_eval.jsonl"
SHIPPED_UTILITY = {"gsm8k": "pkg:assets/arithmetic_test.jsonl"}


def _shipped(spec: str) -> str | None:
    from lat.data.records import resolve_path

    return spec if Path(resolve_path(spec)).is_file() else None


class Evaluator:
    """Safety and utility evaluation as configured (data read and judge built once).

    Args:
        cfg: The run configuration (``eval`` section; ``data.task`` for the utility default).
    """

    def __init__(self, cfg: Config):
        from lat.models.precision import autocast_dtype

        e = cfg.eval
        self.cfg = e
        self.autocast = autocast_dtype(e.precision or cfg.train.precision, cfg.train.accelerator, "eval.precision" if e.precision else "train.precision")
        self.items: list[HarmfulItem] = []
        self.judges: dict = {}
        if e.safety:
            path = e.harmful_path or _shipped(SHIPPED_HARMFUL)
            if path is None:
                raise UserError("eval.harmful_path: not set (and no shipped harmful set); or pass eval.safety=false")
            self.items = load_harmful(path, e)
            import dataclasses

            from lat.evaluation.judges import build_judge

            self.judges = {e.judge.name: build_judge(e.judge)}
            for name in e.extra_judges:
                self.judges[name] = build_judge(dataclasses.replace(e.judge, name=name))
        self.utility_task = e.utility_task or cfg.data.task
        self.utility_records: RecordSet | None = None
        if e.utility:
            path = e.utility_path or _shipped(SHIPPED_UTILITY.get(self.utility_task, ""))
            if path is None:
                raise UserError(f"eval.utility_path: not set (no shipped test set for task {self.utility_task!r}); or pass eval.utility=false")
            self.utility_records = read_records(path)

    def safety(self, model, tokenizer, progress: bool = False) -> tuple[dict, list[dict]]:
        """RSR / JSR@k metrics and samples (empty when safety is off)."""
        if not self.items:
            return {}, []
        return evaluate_safety(model, tokenizer, self.items, self.judges, self.cfg, progress, self.autocast)

    def utility(self, model, tokenizer, progress: bool = False) -> tuple[dict, list[dict]]:
        """Utility metrics and samples (empty when utility is off)."""
        if self.utility_records is None:
            return {}, []
        return evaluate_utility(model, tokenizer, self.utility_records, self.utility_task, self.cfg, progress, self.autocast)


def record_eval(run_dir: Path, metrics: dict, samples: list[dict], epoch: int | None, step: int | None) -> dict:
    """Append one evaluation to ``metrics.json`` (``evals`` + latest values) and ``samples.jsonl``."""
    run_dir = Path(run_dir)
    path = run_dir / "metrics.json"
    evals = json.loads(path.read_text()).get("evals", []) if path.exists() else []
    evals.append({"epoch": epoch, "step": step, **metrics})
    out = update_metrics(run_dir, {**metrics, "evals": evals})
    spath = run_dir / "samples.jsonl"
    old = spath.read_text(encoding="utf-8") if spath.exists() else ""
    with atomic_write(spath) as f:
        f.write(old)
        for row in samples:
            f.write(json.dumps({"epoch": epoch, "step": step, **row}, ensure_ascii=False) + "\n")
    return out


def _wandb_table(trainer: L.Trainer, key: str, samples: list[dict], rows: int, step: int) -> None:
    from lightning.pytorch.loggers import WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and samples:
            import wandb

            cols = [c for c in ("metric", "category", "prompt", "prefix", "response", "reference", "label", "score") if c in samples[0]]
            table = wandb.Table(columns=cols, data=[[s.get(c) for c in cols] for s in samples[:rows]])
            logger.experiment.log({f"samples/{key}": table, "trainer/global_step": step})  # see DivergenceMonitor


class EvalCallback(L.Callback):
    """Run one evaluation on epoch ends and at the end of training (rank 0).

    Args:
        name: ``safety`` or ``utility``.
        evaluate: (model, tokenizer) -> (metrics, samples).
        tokenizer: The model's tokenizer.
        every_n_epochs: Interval in epochs.
        run_dir: Run folder for metrics.json / samples.jsonl (None = log only).
        table_rows: Sample generations per W&B table.
    """

    def __init__(self, name: str, evaluate: Callable, tokenizer, every_n_epochs: int, run_dir: Path | None, table_rows: int = 20):
        self.name = name
        self.evaluate = evaluate
        self.tokenizer = tokenizer
        self.every_n_epochs = max(1, every_n_epochs)
        self.run_dir = run_dir
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
        if self.run_dir is not None:
            record_eval(self.run_dir, metrics, samples, trainer.current_epoch, trainer.global_step)
        self.history.append({"epoch": trainer.current_epoch, "step": trainer.global_step, **metrics})
        return metrics

    def on_train_epoch_end(self, trainer: L.Trainer, module) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.run(trainer, module)

    def on_train_end(self, trainer: L.Trainer, module) -> None:
        self.run(trainer, module)


class SafetyEvalCallback(EvalCallback):
    """RSR / JSR@k on epoch ends (see :class:`EvalCallback`)."""

    def __init__(self, evaluator: Evaluator, tokenizer, every_n_epochs: int, run_dir: Path | None, table_rows: int = 20):
        super().__init__("safety", evaluator.safety, tokenizer, every_n_epochs, run_dir, table_rows)


class UtilityEvalCallback(EvalCallback):
    """Task utility on epoch ends (see :class:`EvalCallback`)."""

    def __init__(self, evaluator: Evaluator, tokenizer, every_n_epochs: int, run_dir: Path | None, table_rows: int = 20):
        super().__init__("utility", evaluator.utility, tokenizer, every_n_epochs, run_dir, table_rows)
