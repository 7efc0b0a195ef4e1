"""Fine-tuning recipe: one run into ``runs/<name>/``, read top to bottom in :func:`_train`.

The run folder receives ``config.yaml``, ``environment.json``, ``metrics.json``,
``divergence.csv``, ``logs/metrics.csv`` (every logged metric), ``checkpoints/last.ckpt``
(trainable weights + optimizer state; what ``run.resume=true`` continues from; deleted once the
run has finished with ``train.keep_checkpoint=false``), the final
adapter in peft format (``adapter/``, loadable with ``PeftModel.from_pretrained``; ``model/`` for
full fine-tuning) and, with ``train.save_merged=true``, the merged model (``merged/``).
Distribution (DDP, several nodes) is Lightning's: set ``train.strategy``,
``train.devices`` and ``train.num_nodes`` (:mod:`lat.workflows.launch` checks them first). Every
rank runs this recipe; rank 0 alone writes the run folder, evaluates and saves.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import lightning as L
import torch
import yaml
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger

from lat.callbacks.alarm import DriftAlarm
from lat.callbacks.divergence import DivergenceMonitor, shared_reference_cache
from lat.callbacks.evaluation import EvalCallback, RecordLedger, SafetyEvalCallback, UtilityEvalCallback
from lat.callbacks.interrupt import GracefulStop
from lat.callbacks.packing import PackingCheck
from lat.config import Config, redact, secrets, to_dict
from lat.config.identity import answer_losses_key, changed_settings, probe_answers_key, reference_identity
from lat.core.cache import cached_json
from lat.core.errors import RunStopped, UserError
from lat.core.fileio import atomic_folder
from lat.core.precision import autocast_dtype, resolve_precision
from lat.core.ranks import LAUNCHER_VARIABLES, RUN_DIR_VARIABLE, is_primary, restored_environment
from lat.core.registry import unknown_name
from lat.data.records import RecordSet
from lat.evaluation.generate import GenerationSettings, answer
from lat.models.choices import DEFENSES
from lat.models.loading import load_model_and_tokenizer, parameter_counts, prepare_for_training
from lat.models.module import LookAheadModule
from lat.models.scoring import answer_token_losses
from lat.runs.folder import environment, finished, keep_records, record_counts, record_eval, run_folder, run_name, update_metrics
from lat.workflows.common import build_datamodule, build_evaluator
from lat.workflows.defend import backdoor_examples, backdoor_trigger, defend, lisa_callback, triggered_evaluator
from lat.workflows.launch import check_launch, distribution_args


def _csv_version(run_dir: Path) -> str:
    """``""`` (logs/metrics.csv) for a new run; ``resume-N`` for the N-th resumption, so a
    resumed run never overwrites the metrics logged before it."""
    n = 0
    while (run_dir / "logs" / (f"resume-{n}" if n else "") / "metrics.csv").exists():
        n += 1
    return f"resume-{n}" if n else ""


@contextlib.contextmanager
def redacted_argv(cfg: Config) -> Iterator[None]:
    """``sys.argv`` with secret values redacted while a logger starts (and records it)."""
    found = secrets(cfg)
    saved = sys.argv
    sys.argv = [redact(a, found) for a in saved]
    try:
        yield
    finally:
        sys.argv = saved


def build_loggers(cfg: Config, run_dir: Path) -> list[Logger]:
    """CSV always; W&B unless ``logging.wandb_mode=disabled`` (offline by default)."""
    loggers: list[Logger] = [CSVLogger(str(run_dir), name="logs", version=_csv_version(run_dir))] if cfg.logging.csv else []
    if cfg.logging.wandb_mode != "disabled":
        from lightning.pytorch.loggers import WandbLogger

        id_file = run_dir / "wandb_id.txt"
        found = secrets(cfg)
        loggers.append(
            WandbLogger(
                project=cfg.logging.project,
                entity=cfg.logging.entity,
                tags=[redact(t, found) for t in cfg.logging.tags],
                name=run_dir.name,
                save_dir=str(run_dir),
                mode=cfg.logging.wandb_mode,
                config=to_dict(cfg),
                id=id_file.read_text().strip() if id_file.exists() else None,
                resume="allow",
            )
        )
        if is_primary():  # the other ranks' W&B logger is a placeholder without a run
            with redacted_argv(cfg):  # W&B records the command line in its run metadata
                id_file.write_text(loggers[-1].experiment.id)
    return loggers


def build_trainer(cfg: Config, run_dir: Path, callbacks: list, loggers: list[Logger], has_val: bool) -> L.Trainer:
    """The Lightning Trainer for this config (precision, strategy, devices from ``train``)."""
    t = cfg.train
    try:
        return L.Trainer(
            max_epochs=t.epochs,
            max_steps=t.max_steps,
            **distribution_args(t),
            precision=resolve_precision(t.precision, t.accelerator),
            accumulate_grad_batches=t.accumulate_grad_batches,
            gradient_clip_val=t.gradient_clip_val or None,
            log_every_n_steps=t.log_every_n_steps,
            callbacks=callbacks,
            logger=loggers or False,
            default_root_dir=str(run_dir),
            limit_val_batches=None if has_val else 0,
            num_sanity_val_steps=0,
            use_distributed_sampler=False,  # EpochSampler shards the global order itself (resumable)
        )
    except (ValueError, ImportError, MisconfigurationException) as e:  # Lightning's word on the accelerator, strategy and devices
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(
            f"train.accelerator={t.accelerator}, train.strategy={t.strategy}, train.devices={t.devices}: Lightning cannot set them up ({first})"
        ) from None


@dataclass
class TrainResult:
    """What a finished run leaves behind.

    Attributes:
        run_dir: The run folder.
        module: The trained LightningModule (model inside).
        tokenizer: The tokenizer.
        metrics: The content of metrics.json.
    """

    run_dir: Path
    module: LookAheadModule
    tokenizer: object
    metrics: dict


def drift_alarm(cfg: Config, monitor: DivergenceMonitor) -> DriftAlarm | None:
    """The drift alarm configured by ``train.drift_alarm_*`` (None when off)."""
    t = cfg.train
    if t.drift_alarm_kl is None:
        return None
    if not monitor.loaders:
        raise UserError("train.drift_alarm_kl: needs a probe set (data.probes)")
    if t.drift_alarm_probe is not None and t.drift_alarm_probe not in monitor.loaders:
        raise unknown_name("train.drift_alarm_probe", "probe set", t.drift_alarm_probe, list(monitor.loaders))
    return DriftAlarm(monitor, t.drift_alarm_probe, t.drift_alarm_positions, t.drift_alarm_kl, t.drift_alarm_stop)


def fine_tune(cfg: Config, harmful_pool: RecordSet | None = None, base: Config | None = None) -> TrainResult:
    """Fine-tune ``model`` as configured (the model it names is the starting point: see
    :func:`lat.workflows.train.train` for ``train.start_from``); resume from
    ``checkpoints/last.ckpt`` with ``run.resume``. ``harmful_pool`` holds the pairs poisoned
    fine-tuning mixes in (``data.harmful_mix``: :func:`lat.workflows.poison.harmful_pool`);
    ``base`` is the run's config with ``model`` still the unaligned base the seed was aligned
    from, for a defense that compares with it (``defense.name``).

    A mistake found before the first checkpoint (a bad data file, an unknown setting) removes
    the run folder this call created, so no partial run is left behind.
    """
    check_launch(cfg.train)
    check_resumable(cfg)
    with run_folder(cfg) as run_dir:
        return _train(cfg, run_dir, harmful_pool, base)


def check_resumable(cfg: Config) -> None:
    """Refuse a resume that would not continue the recorded run, before its folder is opened
    (which would rewrite its ``config.yaml`` for a run that never happens).

    Raises:
        UserError: ``run.resume`` with settings that change results other than the recorded
            ones (:func:`lat.config.identity.changed_settings`), or on a finished run folder
            without ``checkpoints/last.ckpt``.
    """
    if not cfg.run.resume or not is_primary():  # rank 0 checks for every rank
        return
    run_dir = Path(cfg.run.root) / run_name(cfg)
    recorded = run_dir / "config.yaml"
    if recorded.is_file():
        try:
            old = yaml.safe_load(recorded.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            old = None
        if not isinstance(old, dict):
            raise UserError(f"{recorded}: unreadable, so the run cannot be checked for a resume; choose another run.name")
        changed = changed_settings(old, cfg)
        if changed:
            shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
            raise UserError(
                f"{run_dir}: recorded with other settings ({shown}); a resume continues the run as it was: drop those overrides or choose another run.name"
            )
    if not (run_dir / "checkpoints" / "last.ckpt").exists() and finished(run_dir):
        raise UserError(
            f"{run_dir}: finished, and its checkpoint was not kept (train.keep_checkpoint=false); "
            "nothing to resume: the final weights are in adapter/ or model/"
        )


VOLATILE = ("train/tokens_per_s",)
"""Logged metrics that measure the machine, not the run: kept out of metrics.json (which the
same config and seed reproduce exactly) and left to the loggers."""


def _train(cfg: Config, run_dir: Path, harmful_pool: RecordSet | None, base: Config | None) -> TrainResult:
    L.seed_everything(cfg.run.seed, workers=True, verbose=False)
    model, tok = load_model_and_tokenizer(cfg.model, cfg.run.seed)
    prepared = prepare_for_training(model, cfg.model, cfg.lora, cfg.train.compile)
    answers, losses = seed_answer_fn(cfg, prepared.model, tok), seed_answer_losses_fn(cfg, prepared.model, tok)
    trigger = (
        backdoor_trigger(tok, cfg.defense.backdoor_trigger_tokens, cfg.defense.backdoor_seed) if "trigger" in DEFENSES.meta(cfg.defense.name)["needs"] else None
    )
    provider = backdoor_examples(cfg, tok, trigger) if trigger is not None else []
    dm = build_datamodule(cfg, tok, answer_fn=answers, answer_losses_fn=losses, harmful_pool=harmful_pool, provider_examples=provider)
    dm.setup("fit")
    module = LookAheadModule(prepared.model, cfg.train, prepared.frozen_reference)
    monitor = DivergenceMonitor(
        dm.probe_dataloaders(),
        cfg.train.divergence_every_n_steps,
        cfg.train.divergence_positions,
        run_dir / "divergence.csv",
        reference_cache=shared_reference_cache(reference_identity(cfg), cfg.train.divergence_reference_cache_mb * 2**20),
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    ckpt = ModelCheckpoint(dirpath=str(run_dir / "checkpoints"), save_last=True, save_top_k=0, every_n_train_steps=cfg.train.checkpoint_every_n_steps or None)
    loggers = build_loggers(cfg, run_dir)
    counts = parameter_counts(prepared.model)
    for logger in loggers:
        logger.log_hyperparams({**counts, **{"env/" + k: str(v) for k, v in environment().items()}})
    alarm = drift_alarm(cfg, monitor)
    packing = [PackingCheck(len(tok))] if cfg.data.packing else []
    evals = eval_callbacks(cfg, tok, run_dir, trigger)
    ledger = RecordLedger(functools.partial(record_counts, run_dir), functools.partial(keep_records, run_dir))
    stop = GracefulStop(last)
    lisa = [lisa_callback(cfg, tok)] if "alignment states" in DEFENSES.meta(cfg.defense.name)["needs"] else []
    callbacks = [*packing, *lisa, monitor, *([alarm] if alarm else []), *evals, ledger, stop, ckpt]
    trainer = build_trainer(cfg, run_dir, callbacks, loggers, dm.val_set is not None)
    resume = cfg.run.resume and last.exists()
    if resume and is_primary():
        print(f"lat train: resuming {run_dir} from step {checkpoint_step(last)}", file=sys.stderr, flush=True)
        # Lightning cannot see that EpochSampler continues the epoch where it stopped.
        warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")
    try:
        with restored_environment((RUN_DIR_VARIABLE, *LAUNCHER_VARIABLES)):
            os.environ[RUN_DIR_VARIABLE] = str(run_dir)  # what the ranks Lightning starts open
            trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resume else None, weights_only=True)
    except RunStopped as e:
        kept = f"; last checkpoint: {last} (step {checkpoint_step(last)})" if last.exists() and "checkpoint saved" not in str(e) else ""
        raise RunStopped(f"{e}{kept}", e.code) from None
    if not trainer.is_global_zero:
        return TrainResult(run_dir, module, tok, {})  # rank 0 evaluates, saves and records
    stop.install()  # the final evaluation and save are covered too (fit's teardown put back the old handlers)
    try:
        defended = defend(cfg, module.model, tok, base, run_dir)
        if defended:  # the final divergence and evaluation are of the defended model
            monitor.run(trainer, module, again=True)
        for callback in evals:
            callback.finish(trainer, module, after=cfg.defense.name if defended else None)
        for logger in loggers:
            logger.finalize("success")  # again: the final evaluation came after fit's
        save_final(module, tok, run_dir, cfg)
        logged = {**module.restored_metrics, **{k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}}
        final = {k: v for k, v in logged.items() if k not in VOLATILE}
        metrics = update_metrics(
            run_dir,
            {
                "global_step": trainer.global_step,
                "epochs": trainer.current_epoch,
                "precision": str(trainer.precision),
                **counts,
                **{f"data/{k}": v for k, v in dm.stats.items()},
                **final,
                "divergence": monitor.latest,
                **defended,
                **({"alarm/fired_at_steps": [s for s, _ in alarm.fired]} if alarm else {}),
            },
        )
        if not cfg.train.keep_checkpoint:
            last.unlink(missing_ok=True)  # after the last result: until then a crash can still resume
    finally:
        stop.restore()
    stop.raise_if_signalled(run_dir)
    return TrainResult(run_dir, module, tok, metrics)


def checkpoint_step(path: Path) -> int:
    """The global step a Lightning checkpoint was saved at."""
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def seed_answer_fn(cfg: Config, model, tokenizer):
    """(examples, max_new_tokens) -> the starting model's greedy answers, cached on disk.

    Called before the first step, when the model still equals its reference (LoRA's B = 0, or the
    full-fine-tuning copy), so the answers are the seed's. The cache key covers the model, the
    start adapter, the seed of random models and the prompts, so every method compared on the
    same seed is probed on the same tokens.
    """

    def fn(examples, max_new_tokens):
        cast = autocast_dtype(cfg.train.precision, cfg.train.accelerator)
        key = probe_answers_key(cfg, max_new_tokens, [(e.system, e.prompt) for e in examples], cast)
        settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=cfg.data.eval_batch_size, autocast=cast)
        return cached_json("probe_answers", key, lambda: answer(model, tokenizer, examples, settings))

    return fn


def seed_answer_losses_fn(cfg: Config, model, tokenizer):
    """examples -> the starting model's per-answer-token losses, cached on disk (adaptive previews).

    Like :func:`seed_answer_fn` it runs before the first step, when the model is still the seed.
    """

    def fn(examples):
        key = answer_losses_key(cfg, [(e.system, e.prompt, e.answer) for e in examples])
        return cached_json("answer_losses", key, lambda: answer_token_losses(model, tokenizer, examples, cfg.data.max_length, cfg.data.eval_batch_size))

    return fn


def eval_callbacks(cfg: Config, tokenizer, run_dir: Path, trigger: str | None = None) -> list[EvalCallback]:
    """Safety and utility callbacks when ``eval.during_training`` (each only if enabled); with a
    BackdoorAlign ``trigger``, the safety evaluation once more with it before the system prompt."""
    if not cfg.eval.during_training or not (cfg.eval.safety or cfg.eval.utility):
        return []
    ev, e = build_evaluator(cfg), cfg.eval
    record = functools.partial(record_eval, run_dir)
    out: list[EvalCallback] = []
    if e.safety:
        out.append(SafetyEvalCallback(ev, tokenizer, e.every_n_epochs, record, e.sample_table_rows))
    if e.safety and trigger is not None:
        out.append(EvalCallback("safety_trigger", triggered_evaluator(ev, trigger).safety, tokenizer, e.every_n_epochs, record, e.sample_table_rows))
    if e.utility:
        out.append(UtilityEvalCallback(ev, tokenizer, e.every_n_epochs, record, e.sample_table_rows))
    return out


def save_final(module: LookAheadModule, tokenizer, run_dir: Path, cfg: Config) -> None:
    """Save the adapter (peft format) or the full model, and optionally the merged model."""
    model = module.model
    with atomic_folder(run_dir / ("adapter" if cfg.lora.enabled else "model")) as target:
        model.save_pretrained(str(target))
        tokenizer.save_pretrained(str(target))
    if cfg.train.save_merged and cfg.lora.enabled:
        merged = copy.deepcopy(model).merge_and_unload()
        with atomic_folder(run_dir / "merged") as target:
            merged.save_pretrained(str(target))
            tokenizer.save_pretrained(str(target))
