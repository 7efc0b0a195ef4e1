"""Where a fine-tuning starts (``train.start_from``): the base as given, or the aligned seed built
from it (:mod:`lat.workflows.seed`, imported only when a seed is asked for)."""

from __future__ import annotations

from collections.abc import Callable

from lat.config import Config
from lat.core.registry import Registry

START_FROM: Registry[Callable[[Config, bool], Config]] = Registry("starting point", setting="train.start_from")
"""``train.start_from`` -> (config, build) -> the config with the model the fine-tuning starts from."""
START_FROM.add("base", lambda cfg, build: cfg)
START_FROM.add_lazy("seed", "lat.workflows.seed:seed_config")


def starting_point(cfg: Config, build: bool = True) -> Config:
    """``cfg`` with ``model`` pointing at the model named by ``train.start_from``.

    Args:
        cfg: The config.
        build: Build that model if it is not cached (the aligned seed); False only names it.
    """
    return START_FROM.get(cfg.train.start_from)(cfg, build)
