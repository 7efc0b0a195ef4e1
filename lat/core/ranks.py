"""Which process of a distributed run this is, read from the launcher's environment.

Lightning's DDP starts the processes of ranks 1..N-1 itself, as copies of the command line, once
rank 0 reaches ``Trainer.fit``; torchrun and SLURM start every rank at once. Each process then
runs the whole ``lat train`` recipe. Only the primary (global rank 0) creates and writes the run
folder and builds cached artefacts; the others open what it made. These functions answer before
a Trainer exists (Lightning sets its own ``global_rank`` only inside ``fit``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

from lat.core.errors import UserError

RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
"""The launchers' rank variables (torchrun, Lightning's launcher, SLURM, LSF)."""

RUN_DIR_VARIABLE = "LAT_RUN_DIR"
"""The run folder rank 0 opened, in the environment of the processes Lightning starts from it
(a run named by timestamp would otherwise get another name in each process)."""


def is_primary() -> bool:
    """True unless a launcher's rank variable names a rank other than 0."""
    return all(os.environ.get(name, "0").strip() in ("", "0") for name in RANK_VARIABLES)


def external_world_size() -> int | None:
    """How many processes torchrun or SLURM started at once (None when neither did)."""
    world, tasks = os.environ.get("WORLD_SIZE", ""), os.environ.get("SLURM_NTASKS", "")
    if ("TORCHELASTIC_RUN_ID" in os.environ or "GROUP_RANK" in os.environ) and world.isdigit():
        return int(world)
    return int(tasks) if tasks.isdigit() else None


def launched_externally() -> bool:
    """True when several processes of this command were started at once, each resolving its own
    config: by torchrun or SLURM, or on every node of a multi-node run of Lightning's launcher
    (``NODE_RANK`` set by the user, not by a rank 0 that names its run folder)."""
    world = external_world_size()
    node_launched = "NODE_RANK" in os.environ and RUN_DIR_VARIABLE not in os.environ
    return (world is not None and world > 1) or node_launched


@contextlib.contextmanager
def restored_environment(names: Sequence[str]) -> Iterator[None]:
    """Put the environment variables ``names`` back as they were (unset where they were unset)
    when the block ends: rank 0 exports its run folder for the ranks it starts, and Lightning's
    launcher sets :data:`LAUNCHER_VARIABLES` in rank 0's own environment, where a later run in
    the same process would take them for an external launcher's."""
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


LAUNCHER_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
"""What Lightning's launcher writes into the environment of the process that starts the ranks."""


def wait_for(ready: Callable[[], bool], what: str, where: Path, timeout_s: float = 6 * 3600.0, poll_s: float = 1.0) -> None:
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
