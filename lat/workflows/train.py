"""`lat train`: one fine-tuning run into ``runs/<name>/``, starting from the model that
``train.start_from`` names (the base as given, or the aligned seed, built once and cached)."""

from __future__ import annotations

from lat.config import Config
from lat.core.cache import in_seed_cache
from lat.core.errors import UserError
from lat.models.choices import DEFENSES
from lat.runs.folder import run_name
from lat.workflows import poison
from lat.workflows.check import check_config
from lat.workflows.finetune import TrainResult, fine_tune
from lat.workflows.launch import check_launch
from lat.workflows.start import starting_point


def train(cfg: Config, base: Config | None = None) -> TrainResult:
    """Check that the distribution settings can run here, collect what comes from the unaligned
    base (poisoned fine-tuning's answers, ``data.harmful_mix``; the weights a defense compares
    with, ``defense.name``), resolve the starting point (building the seed if asked), then
    fine-tune (see :func:`lat.workflows.finetune.fine_tune`).

    Args:
        cfg: The run's config.
        base: The same config with ``model`` still the unaligned base, where ``cfg`` already has
            the seed in its place (``lat run``); None = ``cfg``.
    """
    check_launch(check_config(cfg).train)
    run_name(cfg)  # under torchrun or SLURM: refused unnamed before the seed is built
    needs = DEFENSES.meta(cfg.defense.name)["needs"]
    if base is None and "unaligned base" in needs and in_seed_cache(cfg.model.name_or_path):
        raise UserError(
            f"defense.name={cfg.defense.name}: model.name_or_path={cfg.model.name_or_path} is an aligned seed, and the unaligned base it "
            "was built from is not named; give the base model with train.start_from=seed"
        )
    base = base or cfg
    pool = poison.harmful_pool(base)  # before the seed build: a mistake in the poison data costs no build
    if "calibration" in needs and cfg.defense.antidote_calibration_path:
        poison.compliant_pairs(base, cfg.defense.antidote_calibration_path, "defense.antidote_calibration_path")  # generated (and checked) now, cached
    return fine_tune(starting_point(cfg), pool, base)
