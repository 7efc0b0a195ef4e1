"""Lisa: alignment and task states in turn (alignment first), the step's batch replaced by an
alignment batch in the alignment state, the weights kept at each switch, and the proximal term
rho/2 ||theta - theta_other||^2 once 10 % of the run has passed."""

from __future__ import annotations

import json
import types

import pytest
import torch
from torch import nn

from lat.callbacks.lisa import ALIGNMENT, TASK, Lisa, phase_lengths
from lat.config import load_config
from lat.core.errors import UserError
from lat.workflows.check import check_config


def test_the_phases_are_the_papers_100_and_900_scaled_to_short_runs():
    assert phase_lengths(5000, None, None) == (100, 900)
    assert phase_lengths(16, None, None) == (2, 14)
    assert phase_lengths(3, None, None) == (1, 3)
    assert phase_lengths(16, 4, None) == (4, 14) and phase_lengths(16, 1, 2) == (1, 2)


class _Module(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3))
        self.frozen = nn.Parameter(torch.ones(2), requires_grad=False)
        self.regularizers: list = []

    @property
    def device(self):
        return torch.device("cpu")

    def log(self, *a, **k):
        pass


class _Data(list):
    """Five encoded alignment examples (the token id is the example's index)."""

    lengths = [1] * 5


def _lisa(steps=(2, 3), rho=1.0) -> Lisa:
    data = _Data({"input_ids": torch.tensor([i]), "attention_mask": torch.tensor([1])} for i in range(5))
    return Lisa(data, lambda rows: {k: torch.stack([r[k] for r in rows]) for k in rows[0]}, 1, 0, *steps, rho=rho)


def test_the_states_alternate_alignment_first_with_alignment_batches_in_the_alignment_state():
    lisa = _lisa()
    module, trainer = _Module(), types.SimpleNamespace(world_size=1, global_rank=0, estimated_stepping_batches=20)
    lisa.on_train_start(trainer, module)
    assert module.regularizers == [lisa.proximal]
    states, seen = [], []
    for step in range(11):
        batch = {"input_ids": torch.tensor([[100 + step]]), "attention_mask": torch.tensor([[1]])}
        lisa.on_train_batch_start(trainer, module, batch, step)
        states.append(lisa.state)
        seen.append(int(batch["input_ids"][0, 0]))
        with torch.no_grad():
            module.w += 1.0  # a training step
        lisa.on_train_batch_end(trainer, module, None, batch, step)
    a, t = ALIGNMENT, TASK
    assert states == [a, a, t, t, t, a, a, t, t, t, a]
    assert [s >= 100 for s in seen] == [st == t for st in states]  # task batches kept, alignment ones replaced
    assert sorted(s for s in seen if s < 100)[:5] == [0, 1, 2, 3, 4]  # every alignment example, then a new pass


def test_each_switch_keeps_the_ending_states_weights_and_the_proximal_pulls_towards_the_other():
    lisa = _lisa(rho=2.0)
    module, trainer = _Module(), types.SimpleNamespace(world_size=1, global_rank=0, estimated_stepping_batches=20)
    lisa.on_train_start(trainer, module)
    for step in range(3):  # two alignment steps (w: 0 -> 2), then the switch to the task state
        lisa.on_train_batch_start(trainer, module, {"input_ids": torch.zeros(1, 1), "attention_mask": torch.ones(1, 1)}, step)
        if step < 2:
            with torch.no_grad():
                module.w += 1.0
            lisa.on_train_batch_end(trainer, module, None, {}, step)
    assert lisa.state == TASK and torch.equal(lisa.anchors[ALIGNMENT]["w"], torch.full((3,), 2.0))
    assert torch.equal(lisa.anchors[TASK]["w"], torch.zeros(3)) and "frozen" not in lisa.anchors[TASK]
    assert lisa.proximal(module) is None  # 2 steps done = 10 % of 20: not yet
    lisa.steps = 3
    with torch.no_grad():
        module.w += 1.0  # w = 3, anchor (alignment's) = 2
    assert float(lisa.proximal(module)) == pytest.approx(2.0 / 2 * 3 * 1.0)
    assert lisa.state_dict()["anchors"][ALIGNMENT]["w"].tolist() == [2.0, 2.0, 2.0]


def test_a_lisa_run_without_its_alignment_data_is_refused():
    with pytest.raises(UserError, match="no such file"):
        check_config(load_config(["experiment=smoke", "defense.name=lisa", "defense.lisa_alignment_path=/nonexistent.jsonl"]))
    with pytest.raises(UserError, match="defense.lisa_rho: must be >= 0"):
        load_config(["experiment=smoke", "defense.name=lisa", "defense.lisa_rho=-1"])


def test_lat_train_runs_the_states_in_turn_with_the_proximal_term(tmp_path, monkeypatch):
    from lat.workflows.train import train

    monkeypatch.setenv("LAT_CACHE", str(tmp_path / "cache"))
    overrides = ["experiment=smoke", f"run.root={tmp_path / 'runs'}", "defense.name=lisa", "defense.lisa_alignment_steps=1", "defense.lisa_task_steps=3"]
    overrides += ["train.log_every_n_steps=1", "data.train_path=pkg:assets/arithmetic_train.jsonl", "data.max_train_samples=16", "train.max_steps=-1"]
    result = train(load_config(overrides))
    rows = [line.split(",") for line in (result.run_dir / "logs" / "metrics.csv").read_text().splitlines()]
    header, body = rows[0], rows[1:]
    state = [float(r[header.index("lisa/alignment_state")]) for r in body if r[header.index("lisa/alignment_state")]]
    assert state == [1.0, 0.0, 0.0, 0.0]  # 4 steps: one alignment step, then three task steps
    proximal = [float(r[header.index("train/regularizer")]) for r in body if r[header.index("train/regularizer")]]
    # From step 1 on (10 % of 4 steps done), towards the weights the alignment step ended with:
    # 0 right after the switch, then growing as the task steps move away from them.
    assert len(proximal) == 3 and proximal[0] == 0.0 and 0 < proximal[1] < proximal[2]
    assert json.loads((result.run_dir / "metrics.json").read_text())["global_step"] == 4


def test_a_killed_lisa_run_resumes_to_the_files_of_an_uninterrupted_one(tmp_path):
    import signal

    from lat.cli import main
    from tests.test_reliability import _child, _files

    run = ["experiment=smoke", "data.train_path=pkg:assets/arithmetic_train.jsonl", "data.max_train_samples=16", "train.max_steps=-1", "train.epochs=2"]
    run += ["train.checkpoint_every_n_steps=3", "defense.name=lisa", "defense.lisa_alignment_steps=2", "defense.lisa_task_steps=3", f"run.root={tmp_path}"]
    assert main(["train", *run, "run.name=whole"]) == 0
    killed = _child(tmp_path, 5, signal.SIGKILL, ["train", *run, "run.name=killed"])
    assert killed.returncode != 0
    assert main(["train", *run, "run.name=killed", "run.resume=true"]) == 0
    assert _files(tmp_path / "killed") == _files(tmp_path / "whole")
