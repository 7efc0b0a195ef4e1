"""Helpers for analysis notebooks: where runs live, finished runs and their groups, curves.

The notebooks under ``notebooks/`` read runs from ``$LAT_RUNS`` (default ``runs/`` under the
project). When that folder holds no finished runs they first call
:func:`lat.workflows.sweep.sweep_runs`, which runs the tiny ``smoke`` sweep (random test model, a
minute on two CPU cores), so that every notebook executes anywhere, offline.
"""

from __future__ import annotations

import os
from pathlib import Path

from lat.reporting.runs import Group, group_runs
from lat.runs import read
from lat.runs.read import Run, find_runs

PROJECT = Path(__file__).resolve().parents[2]


def runs_root() -> Path:
    """``$LAT_RUNS`` or the project's ``runs/``."""
    return Path(os.environ.get("LAT_RUNS") or PROJECT / "runs")


def load_groups(folder: Path, keys: list[str] | None = None) -> tuple[list[Run], list[Group]]:
    """Finished runs under ``folder`` and their settings (see :func:`lat.reporting.runs.group_runs`)."""
    runs = find_runs([Path(folder)])
    return runs, group_runs(runs, keys)


def divergence_history(run: Run, probe: str, metric: str = "kl") -> dict[int, dict[int, float]]:
    """step -> {position: value} for every measurement of ``probe`` in the run's divergence.csv."""
    return read.divergence_history(run.path, probe, metric)
