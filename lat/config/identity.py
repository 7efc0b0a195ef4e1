"""Cache identities: what a cached result depends on, as plain JSON-able values of the config.

A change of any value here gives a new key, so a cached result is never reused for settings
it was not made with; a value added later must keep old keys unchanged where it is unset.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from lat.config.schema import Config


def starting_model_key(cfg: Config) -> list:
    """What identifies the starting model in cache keys: path, start adapter, dtype, and the seed
    of a randomly initialised model."""
    return [cfg.model.name_or_path, cfg.model.adapter_path, cfg.model.dtype, cfg.run.seed if cfg.model.name_or_path == "tiny" else None]


def reference_identity(cfg: Config) -> str:
    """What the reference model's probe logits depend on besides the batch: the whole model
    section (path, adapter, dtype, kernel, ...), how the reference is made (adapters disabled or a
    frozen copy), precision, compilation and device settings, and the seed of a random model."""
    t = cfg.train
    return json.dumps([starting_model_key(cfg), asdict(cfg.model), cfg.lora.enabled, t.precision, t.compile, t.accelerator, t.devices,
                       t.num_nodes, t.strategy], sort_keys=True, default=str)
