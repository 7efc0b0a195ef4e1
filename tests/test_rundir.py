"""Run folders: resolved config written, never silently overwritten."""

from __future__ import annotations

import json
import re

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


@pytest.mark.parametrize(
    "name, message",
    [
        ("../escape", r"^run\.name: '\.\./escape' is not a single folder name"),
        ("/tmp/elsewhere", r"^run\.name: '/tmp/elsewhere' is not a single folder name"),
        ("a/b", r"^run\.name: 'a/b' is not a single folder name"),
        ("..", r"^run\.name: '\.\.' is not a single folder name"),
        ("x" * 300, r"^run\.name: 300 bytes long; a folder name holds at most 255$"),
    ],
)
def test_run_names_are_single_folder_names_and_nothing_is_written(tmp_path, name, message, capsys):
    from lat.cli import main

    root = tmp_path / "root"
    code = main(["train", "experiment=smoke", f"run.root={root}", f"run.name={name}"])  # in-process: the CLI's own exit code and stderr
    err = capsys.readouterr().err
    assert code == 2 and re.match(message, err.strip().removeprefix("lat: ")), err
    assert "Traceback" not in err and not any(tmp_path.iterdir())  # nothing beside or under run.root


def test_a_run_root_that_is_a_file_is_refused(tmp_path):
    from lat.workflows.experiment import run_experiment

    (tmp_path / "file").write_text("")
    cfg = load_config(["experiment=smoke", f"run.root={tmp_path / 'file'}"])
    with pytest.raises(UserError, match=r"^run\.root: .*file exists and is not a folder$"):
        open_run_dir(cfg)
    with pytest.raises(UserError, match=r"^run\.root: .*file exists and is not a folder$"):
        run_experiment(cfg)


def test_a_secret_never_names_a_run_folder(tmp_path, monkeypatch):
    from lat.workflows.check import check_config

    monkeypatch.setenv("MY_API_KEY", "sk-verysecret123")
    cfg = load_config(["experiment=smoke", f"run.root={tmp_path}", "run.name=run-sk-verysecret123"])
    with pytest.raises(UserError, match=r"^run\.name: holds the value of \$MY_API_KEY, a secret"):
        check_config(cfg)


def test_a_sweep_name_is_a_single_folder_name(tmp_path):
    from lat.config.sweep import read_sweep

    path = tmp_path / "s.yaml"
    path.write_text("name: ../../s9\nmethod: grid\nparameters:\n  train.lr: {values: [0.1]}\n")
    with pytest.raises(UserError, match=r"s\.yaml: name: '\.\./\.\./s9' is not a single folder name"):
        read_sweep(path)


def test_the_last_evaluation_is_a_defenses_where_one_followed_at_the_same_step(tmp_path):
    import json as _json

    from lat.runs.read import last_evaluation_rows

    rows = [
        {"metric": "rsr", "step": 2, "prompt": "a"},
        {"metric": "rsr", "step": 4, "prompt": "a"},
        {"metric": "rsr", "step": 4, "prompt": "a", "after": "safelora"},
    ]
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(_json.dumps(r) + "\n" for r in rows))
    assert last_evaluation_rows(path) == [rows[2]]
    path.write_text("".join(_json.dumps(r) + "\n" for r in rows[:2]))
    assert last_evaluation_rows(path) == [rows[1]]


def test_files_and_folders_written_atomically_get_the_umasks_modes_not_the_temporary_ones(tmp_path):
    import os

    from lat.core.fileio import atomic_folder, write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        with atomic_folder(tmp_path / "seed") as folder:
            (folder / "model.bin").write_bytes(b"0")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644  # a shared cache stays readable
    assert (tmp_path / "seed").stat().st_mode & 0o777 == 0o755
