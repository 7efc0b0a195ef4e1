"""Faults, determinism and secrets: a killed, stopped or diverged run loses nothing and leaks nothing.

The fault tests run ``lat train`` in a child process with one extra callback (defined here, not in
lat) that kills or signals the process at a chosen step, then resume it and compare the results
file by file with an uninterrupted run of the same config.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from lat.cli import main
from tests.conftest import ROOT

# 32 arithmetic problems, batch 4: 8 steps per epoch, 2 epochs; dropout on (LoRA's 0.05), so the
# random stream matters; a checkpoint every 3 steps; divergence every 2 steps; evaluation at
# both epoch ends.
FAULT_RUN = [
    "experiment=smoke",
    "data.train_path=pkg:assets/arithmetic_train.jsonl",
    "data.max_train_samples=32",
    "train.max_steps=-1",
    "train.epochs=2",
    "train.checkpoint_every_n_steps=3",
    "train.divergence_every_n_steps=2",
]

CHILD = textwrap.dedent("""
    import os, signal, sys
    import lightning as L
    import lat.workflows.finetune as T
    from lat.cli import main

    STEP, SIG = int(sys.argv[1]), int(sys.argv[2])

    class Fault(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == STEP:
                os.kill(os.getpid(), SIG)

    build = T.build_trainer
    T.build_trainer = lambda cfg, run_dir, callbacks, *a: build(cfg, run_dir, [Fault(), *callbacks], *a)
    sys.exit(main(sys.argv[3:]))
""")


def _child(tmp_path: Path, step: int, sig: int, args: list[str]) -> subprocess.CompletedProcess:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(script), str(step), str(int(sig)), *args], capture_output=True, text=True, env=env, cwd=ROOT)


def _results(run: Path) -> tuple[dict, str]:
    return json.loads((run / "metrics.json").read_text()), (run / "divergence.csv").read_text()


def _ckpt_step(run: Path) -> int:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    assert main(["train", *FAULT_RUN, f"run.root={root}", "run.name=whole"]) == 0
    return _results(root / "whole")


def test_same_config_and_seed_give_identical_results_files(tmp_path, uninterrupted):
    assert main(["train", *FAULT_RUN, f"run.root={tmp_path}", "run.name=again"]) == 0
    metrics, divergence = _results(tmp_path / "again")
    assert metrics == uninterrupted[0] and divergence == uninterrupted[1]
    assert metrics["global_step"] == 16 and len(metrics["evals"]) == 4  # safety + utility at 2 epoch ends


@pytest.mark.slow
@pytest.mark.parametrize("step", [5, 11])  # mid-epoch 0 (checkpoint at 3) and mid-epoch 1 (checkpoint at 9, after an evaluation)
def test_sigkill_mid_epoch_then_resume_finishes_like_an_uninterrupted_run(tmp_path, uninterrupted, step):
    args = [*FAULT_RUN, f"run.root={tmp_path}", "run.name=killed"]
    res = _child(tmp_path, step, signal.SIGKILL, ["train", *args])
    assert res.returncode == -signal.SIGKILL
    run = tmp_path / "killed"
    assert _ckpt_step(run) == step - step % 3 and not (run / "adapter").exists()
    assert main(["train", *args, "run.resume=true"]) == 0
    assert _results(run) == uninterrupted


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_and_sigint_save_a_checkpoint_and_exit_cleanly(tmp_path, uninterrupted, sig, capsys):
    # keep_checkpoint=false drops the checkpoint only once the run has finished
    args = [*FAULT_RUN, f"run.root={tmp_path}", "run.name=stopped", "train.keep_checkpoint=false"]
    res = _child(tmp_path, 10, sig, ["train", *args])
    name = signal.Signals(sig).name
    assert res.returncode == 128 + sig, res.stderr[-2000:]
    lines = [line for line in res.stderr.splitlines() if line.startswith("lat:")]
    assert lines == [
        f"lat: stopped by {name} after step 10; checkpoint saved to {tmp_path / 'stopped' / 'checkpoints' / 'last.ckpt'}; continue with run.resume=true"
    ]
    assert "Traceback" not in res.stderr and _ckpt_step(tmp_path / "stopped") == 10
    assert main(["train", *args, "run.resume=true"]) == 0
    assert _results(tmp_path / "stopped") == uninterrupted
    assert not (tmp_path / "stopped" / "checkpoints" / "last.ckpt").exists()
    capsys.readouterr()
    config = (tmp_path / "stopped" / "config.yaml").read_text()
    assert main(["train", *args, "run.resume=true", "train.lr=0.5"]) == 2
    assert capsys.readouterr().err.startswith(f"lat: {tmp_path / 'stopped'}: finished, and its checkpoint was not kept")
    assert _results(tmp_path / "stopped") == uninterrupted
    assert (tmp_path / "stopped" / "config.yaml").read_text() == config  # the refused resume rewrote nothing


def test_non_finite_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    from lat.models import choices

    build = choices.LOSSES.get("ce")
    calls = {"n": 0}

    def poisoned(cfg):
        ce = build(cfg)

        def loss(logits, targets, ref):
            calls["n"] += 1
            value = ce(logits, targets, ref)
            return value * float("nan") if calls["n"] == 5 else value

        return loss

    monkeypatch.setitem(choices.LOSSES, "ce", poisoned)
    code = main(["train", *FAULT_RUN, f"run.root={tmp_path}", "run.name=nan"])
    err = capsys.readouterr().err.strip()
    ckpt = tmp_path / "nan" / "checkpoints" / "last.ckpt"
    assert code == 1 and err == f"lat: training diverged: loss is nan at step 5; last checkpoint: {ckpt} (step 3)"
    assert _ckpt_step(tmp_path / "nan") == 3 and not (tmp_path / "nan" / "adapter").exists()


def test_secrets_never_reach_a_saved_or_logged_config(tmp_path, monkeypatch):
    key = "sk-test-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("WANDB_MODE", "offline")
    args = [
        "experiment=smoke",
        f"run.root={tmp_path}",
        "run.name=secret",
        "logging.wandb_mode=offline",
        f"eval.judge.llm_base_url=https://example.invalid/v1?key={key}",
        f"logging.tags=[{key}]",
    ]
    monkeypatch.setattr(sys, "argv", ["lat", "train", *args])  # W&B records the command line
    assert main(["train", *args]) == 0
    run = tmp_path / "secret"
    texts = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.suffix not in (".ckpt", ".safetensors")}
    assert any(p.name == "config.yaml" for p in texts) and any("wandb" in str(p) for p in texts)
    assert [str(p) for p, b in texts.items() if key.encode() in b] == []
    assert "<redacted $OPENAI_API_KEY>" in (run / "config.yaml").read_text()


def test_safe_defaults():
    from lat.config import load_config

    cfg = load_config(["experiment=smoke"])
    assert cfg.model.trust_remote_code is False


def test_yaml_config_files_are_loaded_safely(tmp_path, capsys):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.yaml"
    bad.write_text(f"train:\n  lr: !!python/object/apply:os.system ['touch {marker}']\n")
    assert main(["config", f"config={bad}"]) == 2
    assert not marker.exists() and "Traceback" not in capsys.readouterr().err


def test_an_experiment_folder_is_not_reused_for_other_settings(tmp_path, capsys):
    from lat.config import load_config
    from lat.workflows.experiment import check_same_experiment, to_yaml

    cfg = load_config(["experiment=smoke", f"run.root={tmp_path}"])
    (tmp_path / "smoke").mkdir()
    (tmp_path / "smoke" / "experiment.yaml").write_text(to_yaml(cfg))
    check_same_experiment(tmp_path / "smoke", cfg)  # same settings: resumes
    assert main(["run", "experiment=smoke", f"run.root={tmp_path}", "train.lr=0.1"]) == 2
    err = capsys.readouterr().err
    assert "holds an experiment run with other settings (train.lr)" in err and len(err.strip().splitlines()) == 1
