"""Every registry name and cross-field rule of a config, checked when the config is resolved
(``lat config``, and the start of every workflow) before any model or data loads, so a misspelt
name exits 2 in about a second with the known names and the closest one. Ranges are checked by
the schema itself (:func:`lat.config.schema.check_ranges`). Nothing here imports torch."""

from __future__ import annotations

from lat.config import AlignConfig, Config, DataConfig, EvalConfig, LoggingConfig, ModelConfig, RunConfig, TrainConfig, apply_overrides, load_config, secrets
from lat.core.cache import in_seed_cache
from lat.core.errors import UserError
from lat.core.paths import folder_name, regular_file, resolve_path
from lat.core.precision import AUTOCAST, WEIGHT_DTYPES
from lat.core.registry import unknown_name
from lat.data.metrics import TASK_METRICS
from lat.data.preview import validate as check_preview
from lat.data.tasks import TASKS
from lat.evaluation.judges import JUDGES
from lat.evaluation.presets import check_specs as check_benchmarks
from lat.models.choices import DEFENSES, LOSSES, PACKING_KERNELS, SCHEDULES
from lat.workflows.start import START_FROM

PRECISIONS = ["auto", *AUTOCAST]
DTYPES = ["auto", *WEIGHT_DTYPES]
RECORD_FORMATS = ["auto", "jsonl", "json", "csv", "hf"]
WANDB_MODES = ["offline", "online", "disabled"]
ACCELERATORS = ["auto", "cpu", "gpu", "cuda", "mps", "tpu"]
"""Lightning's accelerator names (``gpu`` = ``cuda``)."""


def _one_of(setting: str, value: str | None, known: list[str], optional: bool = True) -> None:
    if (value is not None or not optional) and value not in known:
        raise unknown_name(setting, "", value, known)


def _check_data(data: DataConfig, model: ModelConfig) -> None:
    TASKS.check(data.task)
    _one_of("data.format", data.format, RECORD_FORMATS, optional=False)
    names = [probe.name for probe in data.probes]
    for probe in data.probes:
        TASKS.check(probe.task, f"data.probes[{probe.name}].task")
        _one_of(f"data.probes[{probe.name}].answer_source", probe.answer_source, ["field", "model"], optional=False)
        if not probe.path:
            raise UserError(f"data.probes[{probe.name}].path: not set; give the probe set's record file")
        if names.count(probe.name) > 1:
            raise UserError(f"data.probes: two probe sets named {probe.name!r}; the name keys their metrics, so give each its own")
    if data.harmful_mix:
        regular_file(resolve_path(data.harmful_mix_path), "no such file (data.harmful_mix_path)")
    if data.packing and model.attn_implementation not in PACKING_KERNELS:
        raise UserError(
            f"data.packing: model.attn_implementation={model.attn_implementation} attends across packed examples; "
            f"use sdpa, eager or flex_attention, or data.packing=false"
        )
    _one_of("model.dtype", model.dtype, list(WEIGHT_DTYPES), optional=False)


def _check_train(t: TrainConfig, probes: list[str]) -> None:
    LOSSES.check(t.loss)
    SCHEDULES.check(t.schedule)
    START_FROM.check(t.start_from)
    _one_of("train.precision", t.precision, PRECISIONS, optional=False)
    _one_of("train.accelerator", t.accelerator, ACCELERATORS, optional=False)
    if t.devices != "auto" and not all(d.strip().isdigit() for d in t.devices.split(",") if d.strip()):
        raise UserError(f"train.devices: expected auto, a count (4) or device indices (0,1), got {t.devices!r}")
    if t.drift_alarm_kl is not None and not probes:
        raise UserError("train.drift_alarm_kl: needs a probe set (data.probes)")
    if t.drift_alarm_kl is not None and t.drift_alarm_probe is not None:
        _one_of("train.drift_alarm_probe", t.drift_alarm_probe, probes)


def _check_eval(e: EvalConfig, task: str) -> None:
    JUDGES.check(e.judge.name)
    for name in e.extra_judges:
        JUDGES.check(name, "eval.extra_judges")
    if e.utility:
        TASK_METRICS.check(e.utility_task or task, "eval.utility_task" if e.utility_task else "data.task")
    _one_of("eval.precision", e.precision, PRECISIONS)
    _one_of("eval.harmful_format", e.harmful_format, RECORD_FORMATS, optional=False)
    if e.judge.context_safe_below > e.judge.context_unsafe_from:
        raise UserError(
            f"eval.judge.context_safe_below: must not exceed eval.judge.context_unsafe_from ({e.judge.context_safe_below} > {e.judge.context_unsafe_from})"
        )
    check_benchmarks(e.benchmarks, reserved=[*JUDGES.names(), e.judge.name, *e.extra_judges])


def _check_align(a: AlignConfig) -> None:
    _one_of("align.precision", a.precision, PRECISIONS, optional=False)
    _one_of("align.answer_precision", a.answer_precision, PRECISIONS)
    _one_of("align.dtype", a.dtype, DTYPES)


DEFENSE_FILES = {"calibration": "antidote_calibration_path", "trigger": "backdoor_safety_path", "alignment states": "lisa_alignment_path"}
"""What a defense needs (its registry ``needs``) -> the ``defense.`` setting naming that file."""


def _check_defense(cfg: Config, from_seed: bool) -> None:
    name = DEFENSES.check(cfg.defense.name)
    needs = DEFENSES.meta(name)["needs"]
    if "lora" in needs and not cfg.lora.enabled:
        raise UserError(f"defense.name={name}: changes LoRA's adapter weights; needs lora.enabled=true")
    seeded = cfg.align.enabled and (from_seed or cfg.train.start_from == "seed" or in_seed_cache(cfg.model.name_or_path))
    if "calibration" in needs and not cfg.defense.antidote_calibration_path:
        raise UserError(f"defense.name={name}: needs harmful calibration data; set defense.antidote_calibration_path")
    for need, field in DEFENSE_FILES.items():
        if need in needs:
            regular_file(resolve_path(getattr(cfg.defense, field)), f"no such file (defense.{field})")
    if "trigger" in needs and not (cfg.eval.safety and cfg.eval.during_training):
        raise UserError(f"defense.name={name}: is measured with and without its trigger by the safety evaluation; needs eval.safety=true")
    if "unaligned base" in needs and not seeded:
        raise UserError(
            f"defense.name={name}: compares the aligned seed with the unaligned base it was aligned from; needs train.start_from=seed and align.enabled=true"
        )


def _check_logging(log: LoggingConfig) -> None:
    _one_of("logging.wandb_mode", log.wandb_mode, WANDB_MODES, optional=False)


def _check_run(run: RunConfig, found_secrets: dict[str, str]) -> None:
    if run.name is not None:
        folder_name(run.name, "run.name")
        for env, value in found_secrets.items():
            if value in run.name:
                raise UserError(f"run.name: holds the value of ${env}, a secret (it would name a folder); choose another name")


def check_config(cfg: Config, from_seed: bool = False) -> Config:
    """``cfg`` unchanged if every name it uses is registered and its settings agree
    (``from_seed``: it will start from the aligned seed whatever ``train.start_from`` says, as
    ``lat run``'s methods do).

    Raises:
        UserError: The first unknown name (setting, known names, closest match) or broken rule.
    """
    _check_run(cfg.run, secrets(cfg))
    check_preview(cfg.preview)
    _check_data(cfg.data, cfg.model)
    _check_train(cfg.train, [p.name for p in cfg.data.probes])
    _check_eval(cfg.eval, cfg.data.task)
    _check_align(cfg.align)
    _check_defense(cfg, from_seed)
    if cfg.preview.mode == "adaptive" and (cfg.data.safety_mix or cfg.data.harmful_mix):
        raise UserError(
            "preview.mode=adaptive: sets its preview lengths from the starting model's losses on the task data alone; "
            "not with data.safety_mix or data.harmful_mix"
        )
    _check_logging(cfg.logging)
    return cfg


def check_methods(cfg: Config) -> Config:
    """``cfg`` unchanged if each of its ``methods`` (what ``lat run`` fine-tunes) gives a valid config too.

    Raises:
        UserError: The first broken method, named: ``method NAME: <what check_config says>``.
    """
    names = [method.name for method in cfg.methods]
    for i, method in enumerate(cfg.methods):
        folder_name(method.name, f"methods[{i}].name")  # each method trains into its own folder
        if method.name == "seed":
            raise UserError(f"methods[{i}].name: 'seed' is the folder of the seed's own evaluation; choose another name")
        if names.index(method.name) != i:
            raise UserError(f"methods[{i}].name: {method.name!r} is also the name of methods[{names.index(method.name)}]; give each method its own name")
        try:
            check_config(apply_overrides(cfg, list(method.overrides), f"method {method.name}"), from_seed=True)
        except UserError as e:
            raise UserError(f"method {method.name}: {e}") from None
    return cfg


def resolve(args: list[str], methods: bool = False) -> Config:
    """The config of a command line (:func:`lat.config.load_config`), checked; with ``methods``
    (``lat run``, ``lat config``) each of its methods too."""
    cfg = check_config(load_config(args))
    return check_methods(cfg) if methods else cfg
