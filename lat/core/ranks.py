"""Which process of a distributed run this is, read from the launcher's environment.

Lightning's DDP starts the processes of ranks 1..N-1 itself, as copies of the command line, once
rank 0 reaches ``Trainer.fit``; torchrun and SLURM start every rank at once. Each process then
runs the whole ``lat train`` recipe. Only the primary (global rank 0) creates and writes the run
folder and builds cached artefacts; the others open what it made. These functions answer before
a Trainer exists (Lightning sets its own ``global_rank`` only inside ``fit``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable

from lat.core.errors import UserError

RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
"""The launchers' rank variables (torchrun, Lightning's launcher, SLURM, LSF)."""

RUN_DIR_VARIABLE = "LAT_RUN_DIR"
"""The run folder rank 0 opened, in the environment of the processes Lightning starts from it
(a run named by timestamp would otherwise get another name in each process)."""


def is_primary() -> bool:
    """True unless a launcher's rank variable names a rank other than 0."""
    return all(os.environ.get(name, "0").strip() in ("", "0") for name in RANK_VARIABLES)


def launched_externally() -> bool:
    """True when torchrun or SLURM started several processes of this command at once."""
    world = os.environ.get("WORLD_SIZE", "1")
    tasks = os.environ.get("SLURM_NTASKS", "1")
    torchrun = "TORCHELASTIC_RUN_ID" in os.environ or "GROUP_RANK" in os.environ
    return (torchrun and world.isdigit() and int(world) > 1) or (tasks.isdigit() and int(tasks) > 1)


def wait_for(ready: Callable[[], bool], what: str, where: Path, timeout_s: float = 3600.0, poll_s: float = 1.0) -> None:
    """Wait until rank 0 has made ``what`` (a rank > 0 never makes it itself).

    Args:
        ready: () -> whether it is there.
        what: What is waited for, for the messages.
        where: Its path, for the messages.

    Raises:
        UserError: Not there within ``timeout_s`` (rank 0 failed or started with other settings).
    """
    start, said = time.monotonic(), 0.0
    while not ready():
        waited = time.monotonic() - start
        if waited > timeout_s:
            raise UserError(f"{where}: rank 0 has not made {what} in {timeout_s:.0f} s; did it fail, or start with other settings?")
        if waited - said >= 60:
            said = waited
            print(f"lat: waiting for rank 0 to make {what} ({where})", file=sys.stderr, flush=True)
        time.sleep(poll_s)
