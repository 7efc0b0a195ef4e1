"""Can this machine run the configured distribution (``train.accelerator``, ``train.devices``,
``train.strategy``, ``train.num_nodes``)? Checked before a run folder is opened or a model loads,
so an impossible setting costs one line and exit code 2, and nothing is written.

What runs: ``ddp`` (Lightning starts one process per device from the command line, or torchrun /
SLURM start them; CPU processes talk over gloo). Refused: strategies that fork or spawn the
training from inside the launching process (``ddp_spawn``, ``ddp_fork``, ``ddp_notebook``: lat's
callbacks and run folder live in the process that runs the recipe), those that shard the weights
(``fsdp*``, ``deepspeed_stage_3*``: the divergence monitor and the evaluations run the model on
rank 0 alone, and a forward pass over sharded weights needs every rank), and DeepSpeed's others
(their checkpoints are folders, which lat's resume does not read yet).
"""

from __future__ import annotations

import os

from lat.config import TrainConfig
from lat.core.errors import UserError
from lat.core.ranks import external_world_size
from lat.core.registry import unknown_name

IN_PROCESS = ("ddp_spawn", "ddp_fork", "ddp_notebook")
"""Strategy name prefixes that run the training in children of the launching process."""
SHARDED = ("fsdp", "deepspeed_stage_3")
"""Strategy name prefixes that shard the weights across ranks."""
FOLDER_CHECKPOINTS = ("deepspeed",)
"""Strategy name prefixes whose checkpoints are folders, which lat's resume does not read."""
LAUNCHER_ENVIRONMENTS = {
    "torchrun": ("TORCHELASTIC_RUN_ID",),
    "SLURM": ("SLURM_NTASKS",),
    "Lightning's own launcher on each node": ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK"),
}
"""Environment variables that tell Lightning how the nodes of a multi-node run meet."""


def devices_setting(value: str) -> str | int | list[int]:
    """``auto`` | ``4`` | ``0,1`` -> what Lightning expects."""
    if value == "auto":
        return value
    if "," in value:
        return [int(v) for v in value.split(",") if v.strip()]
    return int(value)


def distribution_args(t: TrainConfig) -> dict:
    """The Trainer arguments that say where and across how many processes a run trains (``train``'s
    accelerator, devices, nodes and strategy): the launch check and the run's Trainer both take them
    from here, so the check tests the Trainer the run builds."""
    return {"accelerator": t.accelerator, "devices": devices_setting(t.devices), "num_nodes": t.num_nodes, "strategy": t.strategy}


def _strategy_names() -> list[str]:
    from lightning.pytorch.strategies import StrategyRegistry

    return ["auto", *StrategyRegistry.available_strategies()]


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _mps() -> bool:
    import torch

    return bool(torch.backends.mps.is_available())


def _check_strategy(t: TrainConfig, cuda: int) -> None:
    if t.strategy.startswith(IN_PROCESS):
        raise UserError(
            f"train.strategy={t.strategy}: runs the training in processes forked from this one, where lat's callbacks and run folder "
            "do not follow; use train.strategy=ddp (Lightning starts one process per device)"
        )
    if t.strategy.startswith(SHARDED):
        raise UserError(
            f"train.strategy={t.strategy}: shards the weights across ranks, and lat's divergence monitor and evaluations run the model "
            "on rank 0 alone; use train.strategy=ddp (LoRA's trainable weights are small)"
        )
    if t.strategy.startswith(FOLDER_CHECKPOINTS):
        raise UserError(
            f"train.strategy={t.strategy}: saves checkpoints as folders, which lat's resume and drift-alarm stop do not read yet; use train.strategy=ddp"
        )
    usable = [n for n in _strategy_names() if not n.startswith((*IN_PROCESS, *SHARDED, *FOLDER_CHECKPOINTS))]
    if t.strategy not in usable:
        raise unknown_name("train.strategy", "strategy", t.strategy, usable)


def _check_devices(t: TrainConfig, cuda: int) -> None:
    wants_gpu = t.accelerator in ("gpu", "cuda")
    if wants_gpu and not cuda and (t.accelerator == "cuda" or not _mps()):  # gpu is CUDA or Apple's MPS to Lightning
        raise UserError(f"train.accelerator={t.accelerator}: this machine has no CUDA GPU; use train.accelerator=cpu (or auto)")
    if wants_gpu and not cuda:
        return
    if t.devices == "auto":
        return
    listed = [int(d) for d in t.devices.split(",") if d.strip()]
    on_gpu = wants_gpu or (t.accelerator == "auto" and cuda > 0)
    if on_gpu:
        count = len(listed) if "," in t.devices else listed[0]
        missing = [d for d in listed if d >= cuda] if "," in t.devices else ([] if count <= cuda else [count])
        if missing:
            raise UserError(f"train.devices={t.devices}: this machine has {cuda} CUDA GPU(s) (indices 0-{cuda - 1})")
        return
    if "," in t.devices:
        raise UserError(f"train.devices={t.devices}: CPU processes are given as a count (train.devices=2), not as indices")
    cores = os.cpu_count() or 1
    if listed[0] > cores:
        raise UserError(f"train.devices={t.devices}: this machine has {cores} CPU core(s), and each CPU training process needs one")


def _check_nodes(t: TrainConfig) -> None:
    if t.num_nodes <= 1:
        return
    if any(all(v in os.environ for v in names) for names in LAUNCHER_ENVIRONMENTS.values()):
        return
    raise UserError(
        f"train.num_nodes={t.num_nodes}: no launcher environment says how the nodes meet; start the command on every node "
        "with torchrun (--nnodes, --node_rank, --rdzv-endpoint), under SLURM (srun), or with MASTER_ADDR, MASTER_PORT and NODE_RANK set"
    )


def check_launch(t: TrainConfig) -> int:
    """Refuse what cannot run here; return how many training processes the run has.

    The specific rules above name the setting and what it needs; whatever else Lightning refuses
    is caught by building (not starting) the Trainer the run would build.

    Args:
        t: The run's train section.

    Returns:
        The world size: devices x nodes (1 for a single process).

    Raises:
        UserError: One line naming the setting and what it needs.
    """
    cuda = _cuda_count()
    _check_strategy(t, cuda)
    _check_devices(t, cuda)
    _check_nodes(t)
    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        trainer = L.Trainer(
            **distribution_args(t),
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
    except (ValueError, TypeError, ImportError, MisconfigurationException) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(
            f"train.accelerator={t.accelerator}, train.strategy={t.strategy}, train.devices={t.devices}, "
            f"train.num_nodes={t.num_nodes}: Lightning cannot set them up ({first})"
        ) from None
    started = external_world_size()
    if started is not None and started > 1 and trainer.world_size != started:
        raise UserError(
            f"train.devices={t.devices}, train.num_nodes={t.num_nodes} make {trainer.world_size} training process(es), but the launcher "
            f"started {started}; set train.devices to the processes per node and train.num_nodes to the nodes (and train.strategy=ddp)"
        )
    return trainer.world_size
