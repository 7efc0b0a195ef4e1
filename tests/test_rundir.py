"""Run folders: resolved config written, never silently overwritten."""

from __future__ import annotations

import json

import pytest

from lat.config import load_config
from lat.core.errors import UserError
from lat.runs.folder import open_run_dir


def test_run_folder_gets_resolved_config_and_environment(tmp_path):
    cfg = load_config(["experiment=smoke", f"run.root={tmp_path}", "preview.m=3"])
    path = open_run_dir(cfg)
    assert path == tmp_path / "smoke"
    assert load_config([f"config={path / 'config.yaml'}"]) == cfg
    env = json.loads((path / "environment.json").read_text())
    assert env["versions"]["torch"] and env["versions"]["lat"]


def test_existing_folder_needs_resume(tmp_path):
    cfg = load_config(["experiment=smoke", f"run.root={tmp_path}"])
    open_run_dir(cfg)
    with pytest.raises(UserError, match="run folder exists"):
        open_run_dir(cfg)
    cfg.run.resume = True
    assert open_run_dir(cfg) == tmp_path / "smoke"
    cfg.run.name = "other"
    with pytest.raises(UserError, match="no run folder to resume"):
        open_run_dir(cfg)
