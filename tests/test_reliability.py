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
    from lat.evaluation.evaluator import Evaluator
    from lat.cli import main

    POINT, SIG = sys.argv[1], int(sys.argv[2])
    where, _, arg = POINT.partition(":")
    fault = lambda: os.kill(os.getpid(), SIG)

    class Fault(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if where == "step" and trainer.global_step == int(arg):
                fault()

    build = T.build_trainer
    T.build_trainer = lambda cfg, run_dir, callbacks, *a: build(cfg, run_dir, [Fault(), *callbacks], *a)
    if where in ("safety", "utility"):  # the arg-th evaluation of that kind, once it has begun
        calls, kind = [0], getattr(Evaluator, where)
        def evaluate(self, *a, **k):
            calls[0] += 1
            if calls[0] == int(arg):
                fault()
            return kind(self, *a, **k)
        setattr(Evaluator, where, evaluate)
    if where == "save":
        save = T.save_final
        def save_final(*a):
            fault()
            return save(*a)
        T.save_final = save_final
    sys.exit(main(sys.argv[3:]))
""")


def _child(tmp_path: Path, point: str | int, sig: int, args: list[str]) -> subprocess.CompletedProcess:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    point = f"step:{point}" if isinstance(point, int) else point
    return subprocess.run([sys.executable, str(script), point, str(int(sig)), *args], capture_output=True, text=True, env=env, cwd=ROOT)


def _results(run: Path) -> tuple[dict, str]:
    return json.loads((run / "metrics.json").read_text()), (run / "divergence.csv").read_text()


def _files(run: Path) -> dict[str, bytes]:
    """What a finished run's results are, byte for byte."""
    names = ["metrics.json", "samples.jsonl", "divergence.csv", "adapter/adapter_model.safetensors"]
    return {n: (run / n).read_bytes() for n in names}


def _ckpt_step(run: Path) -> int:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"]


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    assert main(["train", *FAULT_RUN, f"run.root={root}", "run.name=whole"]) == 0
    return root / "whole"


@pytest.fixture(scope="module")
def uninterrupted(whole_run):
    return _results(whole_run)


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
    assert main(["train", *args, "run.resume=true"]) == 2
    assert capsys.readouterr().err.startswith(f"lat: {tmp_path / 'stopped'}: finished, and its checkpoint was not kept")
    assert main(["train", *args, "run.resume=true", "train.lr=0.5"]) == 2
    assert capsys.readouterr().err.startswith(f"lat: {tmp_path / 'stopped'}: recorded with other settings (train.lr)")
    assert _results(tmp_path / "stopped") == uninterrupted
    assert (tmp_path / "stopped" / "config.yaml").read_text() == config  # the refused resume rewrote nothing


# Every point of a run where a stop can land, by the signals a user or a scheduler sends. A
# checkpoint every 4 steps puts one at each epoch's last step (8, 16), where Lightning resumes
# with the next epoch and skips the epoch-end hooks, and so where an evaluation was lost.
POINTS = {
    "mid-epoch": ("step:5", "checkpoint at step 5"),
    "last-step": ("step:8", "checkpoint at step 8, before the epoch-end evaluations"),
    "safety-eval": ("safety:1", "during the first epoch-end evaluation"),
    "utility-eval": ("utility:1", "after the safety evaluation was recorded"),
    "final-epoch-eval": ("safety:2", "during the last epoch-end evaluation"),
    "final-save": ("save", "while the adapter is saved"),
}
SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT, "SIGHUP": signal.SIGHUP, "SIGKILL": signal.SIGKILL}
QUICK = {("last-step", "SIGTERM"), ("utility-eval", "SIGKILL"), ("final-save", "SIGINT"), ("safety-eval", "SIGHUP")}


@pytest.mark.parametrize(
    ("point", "sig"),
    [pytest.param(p, s, marks=() if (p, s) in QUICK else pytest.mark.slow) for p in POINTS for s in SIGNALS],
)
def test_a_run_stopped_at_any_point_by_any_signal_resumes_to_the_same_files(tmp_path, whole_run, point, sig):
    args = [*FAULT_RUN, f"run.root={tmp_path}", "run.name=cut", "train.checkpoint_every_n_steps=4"]
    res = _child(tmp_path, POINTS[point][0], SIGNALS[sig], ["train", *args])
    run = tmp_path / "cut"
    if sig == "SIGKILL":
        assert res.returncode == -signal.SIGKILL
    else:
        assert res.returncode == 128 + SIGNALS[sig] and "Traceback" not in res.stderr, res.stderr[-2000:]
        (line,) = [line for line in res.stderr.splitlines() if line.startswith("lat:")]
        assert line.startswith(f"lat: stopped by {sig}") and "weights_only" not in res.stderr
    if point == "final-save" and sig != "SIGKILL":  # the run finishes first, then stops its caller
        assert "the run had finished first" in line and _files(run) == _files(whole_run)
        return
    assert not (run / "adapter").exists()
    assert main(["train", *args, "run.resume=true"]) == 0
    assert _files(run) == _files(whole_run)


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
    import wandb

    wandb.finish()  # the next offline run in this process starts its own


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


def test_a_resume_with_settings_that_change_results_is_refused_and_rewrites_nothing(whole_run, capsys):
    import yaml

    before = {p: p.read_bytes() for p in whole_run.rglob("*") if p.is_file()}
    args = ["train", *FAULT_RUN, f"run.root={whole_run.parent}", "run.name=whole", "run.resume=true"]
    assert main([*args, "train.lr=0.5", "data.batch_size=2"]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"lat: {whole_run}: recorded with other settings (data.batch_size, train.lr); a resume continues the run as it was: drop those overrides or choose another run.name\n"
    )
    assert {p: p.read_bytes() for p in whole_run.rglob("*") if p.is_file()} == before

    from lat.config import apply_overrides, load_config, to_yaml
    from lat.config.identity import changed_settings

    cfg = load_config(["experiment=smoke"])
    recorded = yaml.safe_load(to_yaml(cfg))
    same = ["train.epochs=3", "train.max_steps=9", "logging.wandb_mode=disabled", "logging.tags=[a]", "train.keep_checkpoint=false", "run.resume=true"]
    assert changed_settings(recorded, apply_overrides(cfg, same, "test")) == []
    other = apply_overrides(cfg, ["train.lr=0.1", "preview.mode=virtual", "eval.jsr_k=[5]", "data.batch_size=2"], "test")
    assert changed_settings(recorded, other) == ["data.batch_size", "eval.jsr_k", "preview.mode", "train.lr"]


def test_a_user_error_found_after_the_model_loads_is_all_of_stderr(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x"}\n')
    args = ["-m", "lat", "train", "experiment=smoke", f"run.root={tmp_path / 'runs'}", f"data.train_path={bad}"]
    res = subprocess.run([sys.executable, *args], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    # transformers' FutureWarning on loading the model used to come first
    assert res.returncode == 2 and res.stderr == f"lat: {bad}: line 1: field 'question': missing\n"
    assert not (tmp_path / "runs").exists()
