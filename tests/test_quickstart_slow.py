"""Slow: the README's main job on the embedded model (uses the cached seed when there is one)."""

from __future__ import annotations

import json

import pytest

from lat.config import load_config
from lat.workflows.experiment import run_experiment


@pytest.fixture(scope="module")
def quickstart_rows(tmp_path_factory):
    root = run_experiment(load_config(["experiment=quickstart", f"run.root={tmp_path_factory.mktemp('runs')}"]))
    assert (root / "kl_per_position.png").exists() and (root / "safety_vs_utility.png").exists()
    return json.loads((root / "results.json").read_text())


@pytest.mark.slow
def test_quickstart_table_shape_and_keyword_seed_target(quickstart_rows):
    assert [r["method"] for r in quickstart_rows] == ["seed", "vanilla", "real", "virtual"]
    for r in quickstart_rows:
        for key in ("safety/rsr", "safety/jsr@3", "safety/embedding/rsr", "utility/gsm8k_acc"):
            assert r[key] is not None and 0.0 <= r[key] <= 1.0, (r["method"], key)
    assert all("kl/pos_01" in r for r in quickstart_rows[1:])
    assert quickstart_rows[0]["safety/rsr"] >= 0.9  # seed target, keyword judge


@pytest.mark.slow
def test_quickstart_seed_target_with_the_embedding_judge(quickstart_rows):
    assert quickstart_rows[0]["safety/embedding/rsr"] >= 0.9  # 97.7 % in experiments/RESULTS.md
