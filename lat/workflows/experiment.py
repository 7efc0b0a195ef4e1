"""`lat run`: seed -> methods -> evaluations -> results table and plots, resumable by stage.

Stages, each finished stage marked by a ``DONE`` file in its folder so an interrupted run
resumes where it stopped (a half-trained method resumes from its last checkpoint):

1. the aligned seed (``lat align``; cached across runs under ``$LAT_CACHE/seeds``);
2. ``<root>/seed``: evaluation of the seed itself;
3. ``<root>/<method>``: one fine-tuning per configured method, starting from the seed, evaluated
   at the end of training;
4. ``<root>/results.{md,csv,json}``, ``kl_per_position.png``, ``safety_vs_utility.png``.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import yaml

from lat.config import Config, apply_overrides, to_yaml
from lat.config.identity import changed_settings
from lat.core.errors import UserError
from lat.core.fileio import remove_created, write_text
from lat.core.paths import folder_name, parent_folder
from lat.reporting.tables import judge_caption, plot_kl, plot_safety_utility, results_table, write_tables
from lat.runs.folder import finished, run_name
from lat.workflows.check import check_config, check_methods
from lat.workflows.evaluate import evaluate
from lat.workflows.launch import check_launch
from lat.workflows.seed import seed_config
from lat.workflows.train import train

DONE = "DONE"


def _say(msg: str) -> None:
    print(f"lat run: {msg}", file=sys.stderr, flush=True)


def _stage(folder: Path, what: str, fn) -> None:
    if (folder / DONE).exists():
        _say(f"{what}: done earlier, kept ({folder})")
        return
    start = time.perf_counter()
    _say(f"{what}: starting")
    fn()
    write_text(folder / DONE, f"{time.perf_counter() - start:.1f} s\n")
    _say(f"{what}: finished in {time.perf_counter() - start:.0f} s")


def method_config(seed: Config, root: Path, name: str, overrides: list[str]) -> Config:
    """The seed config with a method's overrides, placed in ``root/name`` (resuming if started)."""
    started = (root / name / "config.yaml").exists()
    method = apply_overrides(seed, overrides, f"method {name}")  # the user's dotted overrides
    return dataclasses.replace(method, run=dataclasses.replace(method.run, root=str(root), name=name, resume=started))


def train_method(cfg: Config, base: Config) -> None:
    """Train one method, unless its run already finished (stopped after training but before its
    stage was marked done: resuming it would need the checkpoint, which
    ``train.keep_checkpoint=false`` does not keep). ``base`` is the method's config before the
    seed took the model's place: poisoned fine-tuning's answers come from that model."""
    if not finished(Path(cfg.run.root) / str(cfg.run.name)):  # method_config names every method's run
        train(cfg, base)


def check_same_experiment(root: Path, cfg: Config) -> None:
    """A folder holding another experiment is never reused: its finished stages would be mixed
    with stages run under the new settings.

    Raises:
        UserError: ``root/experiment.yaml`` exists and differs from ``cfg``; names the keys.
    """
    path = root / "experiment.yaml"
    if not path.exists():
        return
    try:
        recorded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError):
        recorded = None
    if not isinstance(recorded, dict):
        raise UserError(f"{path}: unreadable; delete the folder or choose another run.name")
    changed = changed_settings(recorded, cfg, may_change=())
    if changed:
        raise UserError(
            f"{root}: holds an experiment run with other settings ({', '.join(changed[:5])}"
            f"{' ...' if len(changed) > 5 else ''}); choose another run.name or delete the folder"
        )


def check_one_process(cfg: Config) -> None:
    """Each method's distribution settings can run here, in one process.

    Raises:
        UserError: A method asks for several training processes: Lightning's DDP launcher
            starts them as copies of the command line, and a copy of ``lat run`` would redo the
            whole experiment; or the settings cannot run on this machine at all.
    """
    for method in cfg.methods:
        t = apply_overrides(cfg, list(method.overrides), f"method {method.name}").train
        world = check_launch(t)
        if world > 1:
            raise UserError(
                f"method {method.name}: train.devices={t.devices}, train.num_nodes={t.num_nodes} make {world} training processes, "
                "and lat run trains its methods one after another in one process; set train.devices=1, "
                "or train each method with lat train (a sweep runs each point as its own lat train)"
            )


def run_experiment(cfg: Config) -> Path:
    """Run (or resume) the whole comparison; returns the experiment folder."""
    check_methods(check_config(cfg))
    check_one_process(cfg)
    root = parent_folder(cfg.run.root, "run.root") / folder_name(cfg.run.name or cfg.experiment or run_name(cfg), "run.name")
    check_same_experiment(root, cfg)
    new_root, new_parent = not root.exists(), not root.parent.exists()
    root.mkdir(parents=True, exist_ok=True)
    write_text(root / "experiment.yaml", to_yaml(cfg))
    try:
        return _run_stages(cfg, root)
    except UserError:
        if new_root and not any(root.glob(f"*/{DONE}")):  # a mistake found before any stage finished: nothing to keep
            remove_created(root, new_parent)
        raise


def _run_stages(cfg: Config, root: Path) -> Path:
    start = time.perf_counter()
    seed = seed_config(cfg)
    runs = {"seed": root / "seed"}
    _stage(runs["seed"], "evaluate seed", lambda: evaluate(method_config(seed, root, "seed", []), progress=False, cache=True))
    for method in cfg.methods:
        runs[method.name] = root / method.name
        _stage(
            runs[method.name],
            f"fine-tune {method.name}",
            lambda m=method: train_method(method_config(seed, root, m.name, list(m.overrides)), apply_overrides(cfg, list(m.overrides), f"method {m.name}")),
        )
    rows = results_table(runs)
    paths = write_tables(rows, root, caption=judge_caption(cfg.eval.judge.name, cfg.eval.extra_judges))
    plot_kl({k: v for k, v in runs.items() if k != "seed"}, root / "kl_per_position.png", max_position=cfg.train.divergence_positions)
    plot_safety_utility(rows, root / "safety_vs_utility.png")
    _say(f"all stages done in {time.perf_counter() - start:.0f} s this call")
    print(paths["md"].read_text())
    return root
