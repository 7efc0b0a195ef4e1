"""Run folders: ``<run.root>/<run.name>/`` holding config.yaml, environment.json and results.

A run folder is never silently overwritten: opening an existing one needs ``run.resume=true``.
In a distributed run only rank 0 creates and writes it; the other ranks open the folder rank 0
made (:mod:`lat.core.ranks`).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

from lat.config import Config, to_yaml
from lat.core.errors import UserError
from lat.core.fileio import atomic_write, remove_created, write_json, write_text
from lat.core.paths import folder_name, parent_folder
from lat.core.ranks import RUN_DIR_VARIABLE, is_primary, launched_externally, wait_for

LIBRARIES = ("torch", "lightning", "transformers", "peft", "torchmetrics", "wandb", "omegaconf", "tokenizers", "lat")


def run_name(cfg: Config) -> str:
    """``run.name`` or ``<experiment or 'run'>-<preview mode>-<UTC timestamp>``.

    Raises:
        UserError: No ``run.name`` under torchrun or SLURM, whose processes start at once and
            would each stamp their own name.
    """
    if cfg.run.name:
        return cfg.run.name
    if launched_externally():
        raise UserError("run.name: not set; under torchrun or SLURM every process must open the same run folder, so name it (run.name=...)")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{cfg.experiment or 'run'}-{cfg.preview.mode}-{stamp}"


def git_commit() -> str | None:
    """The commit of the lat checkout (None outside a git work tree)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment() -> dict:
    """Versions and commit that a result depends on."""
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "git_commit": git_commit(), "versions": versions}


def open_run_dir(cfg: Config) -> Path:
    """Create (or, with ``run.resume``, reopen) the run folder and write the resolved config.

    Returns:
        The run folder.

    Raises:
        UserError: The folder exists and ``run.resume`` is false, or resume finds no folder.
    """
    if not is_primary():
        return _rank_zero_run_dir(cfg)
    path = parent_folder(cfg.run.root, "run.root") / folder_name(run_name(cfg), "run.name")
    if path.exists() and not cfg.run.resume:
        raise UserError(f"{path}: run folder exists; pass run.resume=true to continue it or choose another run.name")
    if cfg.run.resume and not path.exists():
        raise UserError(f"{path}: no run folder to resume")
    path.mkdir(parents=True, exist_ok=True)
    write_text(path / "config.yaml", to_yaml(cfg))
    write_json(path / "environment.json", environment())
    return path


def _rank_zero_run_dir(cfg: Config) -> Path:
    """A rank > 0's run folder: the one rank 0 opened (named in the environment Lightning's
    launcher passes on, or by ``run.name``), once rank 0 has written its config."""
    named = os.environ.get(RUN_DIR_VARIABLE)
    path = Path(named) if named else Path(cfg.run.root) / folder_name(run_name(cfg), "run.name")
    wait_for((path / "config.yaml").exists, "the run folder", path)
    return path


def update_metrics(run_dir: Path, metrics: dict) -> dict:
    """Merge ``metrics`` into ``run_dir/metrics.json`` (atomic read-modify-write); return the whole."""
    path = Path(run_dir) / "metrics.json"
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(metrics)
    write_json(path, current)
    return current


def finished(run: Path) -> bool:
    """A run folder that ``lat train`` finished: a saved final model and the step count it writes
    into ``metrics.json`` last."""
    metrics = run / "metrics.json"
    if not metrics.is_file() or not any((run / d).is_dir() for d in ("adapter", "model")):
        return False
    try:
        return "global_step" in json.loads(metrics.read_text())
    except ValueError:
        return False


@contextlib.contextmanager
def run_folder(cfg: Config) -> Iterator[Path]:
    """:func:`open_run_dir` for the duration of a run: a :class:`UserError` raised before the
    first checkpoint removes the folder this call created (and a run root it created), so a
    mistake in the input leaves no partial run behind."""
    new_root = not Path(cfg.run.root).exists()
    path = open_run_dir(cfg)
    try:
        yield path
    except UserError:
        if is_primary() and not cfg.run.resume and not any(path.glob("checkpoints/*.ckpt")):
            remove_created(path, new_root)
        raise


def record_eval(run_dir: Path, metrics: dict, samples: list[dict], epoch: int | None, step: int | None) -> dict:
    """Append one evaluation to ``metrics.json`` (``evals`` + latest values) and ``samples.jsonl``."""
    run_dir = Path(run_dir)
    path = run_dir / "metrics.json"
    evals = json.loads(path.read_text()).get("evals", []) if path.exists() else []
    evals.append({"epoch": epoch, "step": step, **metrics})
    out = update_metrics(run_dir, {**metrics, "evals": evals})
    spath = run_dir / "samples.jsonl"
    old = spath.read_text(encoding="utf-8") if spath.exists() else ""
    with atomic_write(spath) as f:
        f.write(old)
        for row in samples:
            f.write(json.dumps({"epoch": epoch, "step": step, **row}, ensure_ascii=False) + "\n")
    return out


def record_counts(run_dir: Path) -> dict:
    """How many evaluations ``metrics.json`` and lines ``samples.jsonl`` hold now (what a
    checkpoint keeps, so a resumed run can cut the records back to it: :func:`keep_records`)."""
    run_dir = Path(run_dir)
    metrics, samples = run_dir / "metrics.json", run_dir / "samples.jsonl"
    evals = len(json.loads(metrics.read_text()).get("evals", [])) if metrics.exists() else 0
    lines = sum(1 for line in samples.read_text(encoding="utf-8").splitlines() if line.strip()) if samples.exists() else 0
    return {"evals": evals, "samples": lines}


def keep_records(run_dir: Path, counts: dict) -> None:
    """Cut ``metrics.json``'s evaluations and ``samples.jsonl`` back to ``counts`` (the first ones
    recorded): what a stopped process wrote after its checkpoint, which the resumed run redoes."""
    run_dir = Path(run_dir)
    metrics, samples = run_dir / "metrics.json", run_dir / "samples.jsonl"
    if metrics.exists():
        current = json.loads(metrics.read_text())
        if len(current.get("evals", [])) > counts["evals"]:
            current["evals"] = current["evals"][: counts["evals"]]
            write_json(metrics, current)
    if samples.exists():
        rows = [line for line in samples.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(rows) > counts["samples"]:
            with atomic_write(samples) as f:
                f.writelines(line + "\n" for line in rows[: counts["samples"]])
