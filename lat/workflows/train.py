"""`lat train`: one fine-tuning run into ``runs/<name>/``, starting from the model that
``train.start_from`` names (the base as given, or the aligned seed, built once and cached)."""

from __future__ import annotations

from lat.config import Config
from lat.workflows.check import check_config
from lat.workflows.finetune import TrainResult, fine_tune
from lat.workflows.launch import check_launch
from lat.workflows.start import starting_point


def train(cfg: Config) -> TrainResult:
    """Check that the distribution settings can run here, resolve the starting point (building
    the seed if asked), then fine-tune (see :func:`lat.workflows.finetune.fine_tune`)."""
    check_launch(check_config(cfg).train)
    return fine_tune(starting_point(cfg))
