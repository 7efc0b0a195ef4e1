"""Lightning DDP on CPU (gloo): two ranks train like one process with the global batch, rank 0
alone writes the run folder, a stopped or killed DDP run resumes to the same files, the drift
alarm stops every rank; settings that cannot run here are refused before anything is written.

The end-to-end runs start ``lat train`` in a subprocess with ``train.devices=2
train.strategy=ddp``; Lightning starts rank 1 as a copy of that command line.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lat.config import TrainConfig
from lat.core.errors import UserError
from lat.data.chat import IGNORE_INDEX
from lat.data.datamodule import EpochSampler
from lat.models.module import global_token_share
from lat.runs.folder import run_name
from lat.workflows.launch import check_launch
from tests.conftest import ROOT, run_lat

# 32 arithmetic problems, 2 epochs; LoRA dropout on; divergence every 2 steps, a checkpoint
# every 3, evaluation at both epoch ends. DDP: 2 ranks x batch 4; one process: batch 8.
RUN = [
    "experiment=smoke",
    "data.train_path=pkg:assets/arithmetic_train.jsonl",
    "data.max_train_samples=32",
    "train.max_steps=-1",
    "train.epochs=2",
    "train.lr=1e-2",  # large enough that the divergence is well above float noise
    "train.log_every_n_steps=1",
    "train.checkpoint_every_n_steps=3",
    "train.divergence_every_n_steps=2",
    "train.accelerator=cpu",
]
DDP = ["train.devices=2", "train.strategy=ddp"]
ENV = {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}  # one core per rank


def _losses(run: Path) -> dict[int, float]:
    rows = csv.DictReader((run / "logs" / "metrics.csv").open())
    return {int(r["step"]): float(r["train/loss"]) for r in rows if r.get("train/loss")}


def _divergence(run: Path) -> list[dict]:
    return list(csv.DictReader((run / "divergence.csv").open()))


def _files(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())


def _train(root: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    out = run_lat("train", *RUN, *args, f"run.root={root}", f"run.name={name}", env=ENV)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def ddp_and_one(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("runs")
    out = _train(root, "ddp", *DDP)
    _train(root, "one", "data.batch_size=8")
    return root / "ddp", root / "one", out


# ---------------------------------------------------------------- the sharding and the loss
def test_the_ranks_batches_together_are_the_one_process_batches_of_the_global_batch():
    lengths = [(i * 37) % 101 for i in range(37)]  # 37: the last global batch is short and odd
    one = list(EpochSampler(lengths, batch_size=8, seed=5))
    ranks = [list(EpochSampler(lengths, batch_size=8, seed=5, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 19  # padded so both ranks run the same steps
    for step in range(4):
        together = ranks[0][step * 4 : step * 4 + 4] + ranks[1][step * 4 : step * 4 + 4]
        assert sorted(together) == sorted(one[step * 8 : step * 8 + 8])
    assert sorted(ranks[0][16:] + ranks[1][16:]) == sorted(one[32:] + one[:1])  # the pad repeats the first index
    resumed = EpochSampler(lengths, batch_size=8, seed=5, num_replicas=2, rank=1)
    resumed.resume(0, skip=2 * 8)  # two global steps done
    assert list(resumed) == ranks[1][8:]


def test_rank_weighted_token_means_give_the_gradient_of_the_global_token_mean():
    torch.manual_seed(0)
    hidden = torch.randn(8, 6, 16)
    targets = torch.randint(0, 11, (8, 6))
    targets[:4, 1:] = IGNORE_INDEX  # rank 0's half: 4 answer tokens; rank 1's: 24
    head = torch.randn(16, 11, requires_grad=True)

    def ce(rows: slice) -> torch.Tensor:
        return F.cross_entropy((hidden[rows] @ head).flatten(0, 1), targets[rows].flatten(), ignore_index=IGNORE_INDEX)

    (one,) = torch.autograd.grad(ce(slice(None)), head)
    counts = [(targets[r] != IGNORE_INDEX).sum() for r in (slice(0, 4), slice(4, 8))]
    total = counts[0] + counts[1]
    shares = [global_token_share(ce(r), c, total, 2) for r, c in zip((slice(0, 4), slice(4, 8)), counts)]
    ddp = sum(torch.autograd.grad(s, head)[0] for s in shares) / 2  # what DDP's all-reduce averages
    torch.testing.assert_close(ddp, one, rtol=1e-5, atol=1e-7)
    assert float(sum(shares) / 2) == pytest.approx(float(ce(slice(None))), rel=1e-6)  # the logged loss
    plain = sum(torch.autograd.grad(ce(r), head)[0] for r in (slice(0, 4), slice(4, 8))) / 2
    assert not torch.allclose(plain, one, rtol=1e-3)  # unweighted token means would differ


# ---------------------------------------------------------------- end to end
def test_ddp_on_two_cpu_ranks_trains_like_one_process_and_rank_0_alone_writes(ddp_and_one):
    ddp, one, out = ddp_and_one
    assert out.stdout.strip().splitlines()[-1] == str(ddp) and out.stdout.count(str(ddp)) == 1  # rank 1 prints nothing
    assert _files(ddp) == _files(one)  # one run folder, one adapter, one metrics.json, no second log
    a, b = _losses(ddp), _losses(one)
    assert sorted(a) == sorted(b) == list(range(8))  # 4 steps per epoch, like batch 8
    assert a[0] == pytest.approx(b[0], rel=1e-6)  # the same examples at the same weights
    for step in a:  # float rounding in the all-reduce and in padding, grown by Adam at lr 1e-2
        assert a[step] == pytest.approx(b[step], rel=1e-3), step
    da, db = _divergence(ddp), _divergence(one)
    assert [(r["step"], r["probe"], r["position"], r["count"]) for r in da] == [(r["step"], r["probe"], r["position"], r["count"]) for r in db]
    for ra, rb in zip(da, db):
        if ra["kl"] and float(rb["kl"]) > 1e-3:
            assert float(ra["kl"]) == pytest.approx(float(rb["kl"]), rel=5e-2)
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (ddp, one))
    rates = [k for k in mb if k.startswith(("safety/", "utility/", "overrefusal/"))]
    assert rates and {k: ma[k] for k in rates} == {k: mb[k] for k in rates}
    assert len(ma["evals"]) == len(mb["evals"]) == 4  # two epoch ends x safety and utility
    assert ma["global_step"] == mb["global_step"] == 8


# ---------------------------------------------------------------- stops, kills, the alarm
FAULT = textwrap.dedent("""
    import os, signal, sys
    import lightning as L
    import lat.workflows.finetune as T
    from lat.cli import main

    STEP, SIG, RANK = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]

    class Fault(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == STEP and (RANK == "all" or int(RANK) == trainer.global_rank):
                os.kill(os.getpid(), SIG)

    build = T.build_trainer
    T.build_trainer = lambda cfg, run_dir, callbacks, *a: build(cfg, run_dir, [Fault(), *callbacks], *a)
    sys.exit(main(sys.argv[4:]))
""")


def _faulty(tmp_path: Path, step: int, sig: int, rank: str, *args: str) -> subprocess.CompletedProcess:
    script = tmp_path / "fault.py"
    script.write_text(FAULT)
    cmd = [sys.executable, str(script), str(step), str(int(sig)), rank, "train", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **ENV}, cwd=ROOT, timeout=600)


def _results(run: Path) -> dict[str, bytes]:
    return {n: (run / n).read_bytes() for n in ("metrics.json", "divergence.csv", "samples.jsonl", "adapter/adapter_model.safetensors")}


@pytest.mark.slow
def test_a_signal_to_rank_1_alone_stops_every_rank_and_the_resume_matches_an_uninterrupted_run(tmp_path, ddp_and_one):
    ddp, _, _ = ddp_and_one
    args = [*RUN, *DDP, f"run.root={tmp_path}", "run.name=stopped"]
    out = _faulty(tmp_path, 3, signal.SIGTERM, "1", *args)
    assert out.returncode == 128 + signal.SIGTERM, out.stderr[-3000:]
    assert "stopped by SIGTERM after step 3" in out.stderr
    run = tmp_path / "stopped"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3
    assert len(torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["rng_per_rank"]) == 2
    _train(tmp_path, "stopped", *DDP, "run.resume=true")
    assert _results(run) == _results(ddp)


@pytest.mark.slow
def test_a_killed_ddp_run_resumes_from_its_periodic_checkpoint_to_the_same_files(tmp_path, ddp_and_one):
    ddp, _, _ = ddp_and_one
    out = _faulty(tmp_path, 5, signal.SIGKILL, "all", *RUN, *DDP, f"run.root={tmp_path}", "run.name=killed")
    assert out.returncode != 0
    run = tmp_path / "killed"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3
    _train(tmp_path, "killed", *DDP, "run.resume=true")
    assert _results(run) == _results(ddp)


@pytest.mark.slow
def test_the_drift_alarm_stops_every_ddp_rank(tmp_path):
    out = run_lat("train", *RUN, *DDP, "train.drift_alarm_kl=1e-9", "train.drift_alarm_stop=true", f"run.root={tmp_path}", "run.name=alarm", env=ENV)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "drift alarm at step 2" in out.stderr
    metrics = json.loads((tmp_path / "alarm" / "metrics.json").read_text())
    assert metrics["global_step"] == 2 and metrics["alarm/fired_at_steps"] == [2]


@pytest.mark.slow
def test_torchrun_starts_the_ranks_and_trains_as_lightnings_launcher_does(tmp_path, ddp_and_one):
    ddp, _, _ = ddp_and_one
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lat"]
    cmd = [*torchrun, "train", *RUN, *DDP, f"run.root={tmp_path}", "run.name=torchrun"]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **ENV}, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert _results(tmp_path / "torchrun") == _results(ddp)


# ---------------------------------------------------------------- what cannot run here
@pytest.mark.parametrize(
    "settings, says",
    [
        ({"strategy": "fsdp"}, "train.strategy=fsdp: shards the weights"),
        ({"strategy": "deepspeed_stage_3"}, "train.strategy=deepspeed_stage_3: shards the weights"),
        ({"strategy": "deepspeed_stage_2"}, "train.strategy=deepspeed_stage_2: saves checkpoints as folders"),
        ({"strategy": "ddp_spawn", "devices": "2"}, "use train.strategy=ddp"),
        ({"strategy": "dpp"}, "(did you mean 'ddp'?)"),
        ({"accelerator": "gpu"}, "train.accelerator=gpu: this machine has no CUDA GPU"),
        ({"accelerator": "cpu", "devices": "0,1"}, "given as a count"),
        ({"accelerator": "cpu", "devices": str((os.cpu_count() or 1) + 1)}, "CPU core(s)"),
        ({"accelerator": "cpu", "num_nodes": 2}, "train.num_nodes=2: no launcher environment"),
    ],
)
def test_a_strategy_that_cannot_run_here_is_refused_in_one_line(settings, says, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("the refusals are of a machine without CUDA")
    for name in ("MASTER_ADDR", "NODE_RANK", "SLURM_NTASKS", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(UserError, match="") as e:
        check_launch(TrainConfig(**settings))
    assert says in str(e.value) and "\n" not in str(e.value)


def test_what_can_run_here_gives_its_world_size():
    assert check_launch(TrainConfig(accelerator="cpu")) == 1
    assert check_launch(TrainConfig(accelerator="cpu", devices="2", strategy="ddp")) == 2


def test_lat_train_refuses_before_it_writes_anything(tmp_path, capsys):
    from lat.cli import main

    assert main(["train", "experiment=smoke", "train.strategy=fsdp", f"run.root={tmp_path / 'runs'}"]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "train.strategy=fsdp: shards the weights" in err
    assert not (tmp_path / "runs").exists()


def test_lat_run_refuses_several_training_processes_at_config_time(tmp_path, capsys):
    from lat.cli import main

    assert main(["run", "experiment=smoke", *DDP, f"run.root={tmp_path / 'runs'}"]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "make 2 training processes" in err and "lat train" in err
    assert not (tmp_path / "runs").exists()


def test_under_torchrun_a_run_must_be_named(monkeypatch):
    import dataclasses

    from lat.config import load_config

    cfg = load_config(["experiment=smoke"])
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, name=None))
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="run.name: not set"):
        run_name(cfg)


SWEEP = """\
name: ddp
method: grid
parameters:
  run.seed: {values: [0]}
command: ["${interpreter}", -m, lat, train, experiment=smoke, "${args_no_hyphens}"]
"""


@pytest.mark.slow
def test_a_sweep_point_trains_under_ddp(tmp_path):
    (tmp_path / "ddp.yaml").write_text(SWEEP)
    out = run_lat("sweep", str(tmp_path / "ddp.yaml"), *DDP, "train.accelerator=cpu", "--root", str(tmp_path / "runs"), env=ENV)
    assert out.returncode == 0, out.stderr[-3000:]
    (point,) = json.loads((tmp_path / "runs" / "ddp" / "sweep.json").read_text())["points"]
    assert point["status"] == "done"
    assert (tmp_path / "runs" / "ddp" / point["id"] / "adapter" / "adapter_model.safetensors").is_file()


def test_a_sweep_whose_points_cannot_run_here_is_refused_before_its_folder_exists(tmp_path, capsys):
    from lat.cli import main

    (tmp_path / "ddp.yaml").write_text(SWEEP)
    assert main(["sweep", str(tmp_path / "ddp.yaml"), "train.strategy=fsdp", "--root", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "point 0" in err and "train.strategy=fsdp: shards the weights" in err
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- collectives and launchers, without processes
class _Strategy:
    """Stands in for Lightning's DDP strategy: checks the device, answers with what the other ranks would."""

    root_device = torch.device("meta")

    def __init__(self, others: float, mine=lambda: 0, during=None):
        self.others, self.mine, self.during = others, mine, during

    def reduce(self, tensor, reduce_op="sum"):
        assert tensor.device == self.root_device  # NCCL reduces tensors on the rank's GPU only
        contributed = float(self.mine())  # (a meta tensor holds no value: the test says what it held)
        if self.during:
            self.during()  # a signal handler running while this rank waits in the all-reduce
        return torch.tensor(max(self.others, contributed))


def _trainer(strategy):
    import types

    return types.SimpleNamespace(world_size=2, strategy=strategy)


def test_a_signal_is_agreed_on_by_all_ranks_and_one_arriving_during_the_all_reduce_is_kept_for_the_next_point(tmp_path):
    from lat.callbacks.interrupt import GracefulStop

    stop = GracefulStop(tmp_path / "last.ckpt")
    assert stop._pending(_trainer(_Strategy(others=signal.SIGTERM)))  # rank 1 was signalled
    assert stop.signum == signal.SIGTERM
    late = GracefulStop(tmp_path / "last.ckpt")
    mine = lambda: late.signum or 0  # noqa: E731
    assert not late._pending(_trainer(_Strategy(others=0, mine=mine, during=lambda: setattr(late, "signum", signal.SIGINT))))
    assert late.signum == signal.SIGINT  # not erased: the next point agrees on it
    assert late._pending(_trainer(_Strategy(others=0, mine=mine)))


def test_torchrun_with_other_devices_than_the_processes_it_started_is_refused(monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="make 1 training process\\(es\\), but the launcher started 2"):
        check_launch(TrainConfig(accelerator="cpu"))


def test_fewer_examples_than_ranks_still_give_every_rank_a_batch():
    ranks = [list(EpochSampler([5, 3, 4], batch_size=8, seed=0, num_replicas=8, rank=r)) for r in range(8)]
    assert [len(r) for r in ranks] == [1] * 8 and sorted({i for r in ranks for i in r}) == [0, 1, 2]


def test_a_checkpoint_of_another_world_size_is_refused(tmp_path):
    import types

    from lat.models.module import LookAheadModule
    from lat.models.tiny import build_tiny_model

    module = LookAheadModule(build_tiny_model(64), TrainConfig())
    module._trainer = types.SimpleNamespace(world_size=1, global_rank=0)
    with pytest.raises(UserError, match="checkpoint of 2 training process\\(es\\), resumed with 1"):
        module.on_load_checkpoint({"world_size": 2})


def test_the_launcher_variables_lightning_sets_in_rank_0_are_put_back(monkeypatch):
    from lat.core.ranks import LAUNCHER_VARIABLES, restored_environment

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setenv("MASTER_PORT", "1234")
    with restored_environment(LAUNCHER_VARIABLES):
        os.environ["LOCAL_RANK"], os.environ["MASTER_PORT"] = "0", "999"
    assert "LOCAL_RANK" not in os.environ and os.environ["MASTER_PORT"] == "1234"


def test_a_node_of_lightnings_multi_node_launcher_must_name_its_run(monkeypatch):
    import dataclasses

    from lat.config import load_config

    cfg = load_config(["experiment=smoke"])
    monkeypatch.setenv("NODE_RANK", "1")
    monkeypatch.delenv("LAT_RUN_DIR", raising=False)
    with pytest.raises(UserError, match="run.name: not set"):
        run_name(dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, name=None)))
    monkeypatch.setenv("LAT_RUN_DIR", "/tmp/x")  # a rank that Lightning's launcher started on node 0 knows its folder
    assert run_name(cfg) == "smoke"


def test_a_loss_that_diverged_on_another_rank_stops_this_one_too():
    import types

    from lat.core.errors import RunStopped
    from lat.models.module import LookAheadModule
    from lat.models.tiny import build_tiny_model

    class Diverged:
        root_device = torch.device("cpu")

        def reduce(self, tensor, reduce_op="sum"):
            return tensor + torch.tensor([7.0, 1.0])  # the other rank: 7 answer tokens, a non-finite loss

    module = LookAheadModule(build_tiny_model(64), TrainConfig())
    module._trainer = types.SimpleNamespace(world_size=2, global_rank=0, strategy=Diverged(), global_step=3)
    ids = torch.randint(0, 64, (1, 6))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.cat([torch.full((1, 3), -100), ids[:, 3:]], 1)}
    with pytest.raises(RunStopped, match="training diverged"):  # this rank's own loss is finite
        module.training_step(batch, 0)
