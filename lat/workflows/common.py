"""Setup helpers the recipes share, each taking the sections it reads."""

from __future__ import annotations

from lat.config import Config
from lat.core.precision import autocast_dtype
from lat.data.datamodule import LookAheadDataModule
from lat.evaluation.evaluator import Evaluator


def build_evaluator(cfg: Config) -> Evaluator:
    """The Evaluator for ``cfg``: its eval section, the autocast dtype resolved from
    ``eval.precision`` (or ``train.precision``) on ``train.accelerator``, and ``data.task`` as the
    default utility task."""
    e = cfg.eval
    setting = "eval.precision" if e.precision else "train.precision"
    return Evaluator(e, autocast=autocast_dtype(e.precision or cfg.train.precision, cfg.train.accelerator, setting), default_task=cfg.data.task)


def build_datamodule(cfg: Config, tokenizer, answer_fn=None, answer_losses_fn=None, harmful_pool=None, provider_examples=()) -> LookAheadDataModule:
    """The datamodule of a run: its data and preview sections, the run's seed, the positions
    the divergence is measured at, and the poisoned fine-tuning's pairs (if any)."""
    return LookAheadDataModule(
        cfg.data,
        cfg.preview,
        tokenizer,
        seed=cfg.run.seed,
        probe_positions=cfg.train.divergence_positions,
        answer_fn=answer_fn,
        answer_losses_fn=answer_losses_fn,
        harmful_pool=harmful_pool,
        provider_examples=provider_examples,
    )
