"""Slow: the README's main job on the embedded model (uses the cached seed when there is one)."""

from __future__ import annotations

import json

import pytest

from lat.config import load_config
from lat.pipeline import run_experiment


@pytest.mark.slow
def test_quickstart_table_and_seed_target(tmp_path):
    cfg = load_config(["experiment=quickstart", f"run.root={tmp_path}"])
    root = run_experiment(cfg)
    rows = json.loads((root / "results.json").read_text())
    assert [r["method"] for r in rows] == ["seed", "vanilla", "real", "virtual"]
    for r in rows:
        for key in ("safety/rsr", "safety/jsr@3", "safety/embedding/rsr", "utility/gsm8k_acc"):
            assert r[key] is not None and 0.0 <= r[key] <= 1.0, (r["method"], key)
    seed = rows[0]
    assert seed["safety/rsr"] >= 0.9 and seed["safety/embedding/rsr"] >= 0.9  # issue target for the seed
    assert (root / "kl_per_position.png").exists() and (root / "safety_vs_utility.png").exists()
