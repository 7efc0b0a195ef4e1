"""``lat sweep``: run a sweep's points locally (one ``lat train`` process each) or via W&B agents.

Local runs keep their state in ``<run.root>/<sweep>/sweep.json`` (rewritten atomically after
every change) next to one run folder and one log per point, so a sweep can be interrupted and
re-run: finished points are skipped, unfinished ones resume from their last checkpoint, failed
ones are tried again. A point finished by an earlier run of another sweep file sharing the folder
(a narrowed slice of the same grid, where the point had another index, and whose ``sweep.json``
replaced this one's) is found by its values' hash and resolved config, and reused. Points whose
resolved configs are identical (``vanilla`` at every ``m`` of a grid, say) run once; the others
are recorded as ``same as`` it.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

from lat.config import SECTIONS, Config, apply_overrides, find_config, load_config, parse_overrides, recorded_config, to_dict
from lat.config.compose import setting, with_settings
from lat.config.sweep import LAT_KEYS, Sweep, command, expand, overrides, point_id, read_sweep
from lat.core.errors import UserError
from lat.core.fileio import write_json, write_text
from lat.core.paths import parent_folder
from lat.data.preview import strategy_params
from lat.reporting.notebook import runs_root
from lat.runs.folder import finished
from lat.workflows.check import check_config
from lat.workflows.launch import check_launch
from lat.workflows.start import starting_point

STATE = "sweep.json"
SUMMARY = "sweep.md"
SUMMARY_METRICS = ("safety/rsr", "safety/jsr@3", "utility/gsm8k_acc", "utility/rouge1", "kl/pos_01")


@dataclass
class Point:
    """One point of a sweep and what happened to it.

    Attributes:
        id: Folder name under the sweep folder.
        values: Dotted config name -> value.
        status: ``pending``, ``done``, ``failed``, ``interrupted`` or ``same``.
        same_as: For ``same``: the id of the point with the identical resolved config.
        returncode: Exit code of its ``lat train`` process.
        seconds: Wall time of its last attempt.
        error: Last line of its log when it failed.
        metrics: Headline metrics from its ``metrics.json``.
    """

    id: str
    values: dict[str, Any]
    status: str = "pending"
    same_as: str | None = None
    returncode: int | None = None
    seconds: float | None = None
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)


def fixed_overrides(sweep: Sweep) -> list[str]:
    """The ``key=value`` items written literally in the file's command (e.g. ``experiment=x``)."""
    items = [a for a in sweep.command if "=" in a and not a.startswith("${")]
    return [f"{k}={v}" for k, v in parse_overrides(items)]


def effective_config(cfg: Config) -> str:
    """The resolved config minus what cannot change a result: run folder, whether the finished run
    keeps its checkpoint, and preview fields the chosen strategy does not read (``m`` under
    ``vanilla``, say); JSON, for comparing points."""
    d = to_dict(cfg)
    d["run"] = {k: v for k, v in d["run"].items() if k not in ("name", "root", "resume")}
    d["train"].pop("keep_checkpoint", None)
    d["preview"] = strategy_params(d["preview"])
    return json.dumps(d, sort_keys=True, default=str)


def plan(sweep: Sweep, extra: list[str], count: int | None = None) -> tuple[list[Point], Config]:
    """Expand the sweep into points, validating each point's whole config before anything runs.

    Args:
        sweep: The validated sweep file.
        extra: Overrides given to ``lat sweep`` itself, applied to every point.
        count: Cap on the number of points (random: how many to draw).

    Returns:
        The points (duplicates marked ``same``) and the base config (for the sweep folder).
    """
    base_args = fixed_overrides(sweep) + list(extra)
    base = load_config(base_args)
    points: list = []
    seen: dict = {}
    launches: set[tuple] = set()
    grid = expand(sweep, count)
    resolve = point_resolver(base_args, base)
    same_base = all(plain_settings(list(values)) for values in grid)
    for i, values in enumerate(tqdm(grid, desc="lat sweep: checking points", unit="point", disable=len(grid) < PROGRESS_FROM, file=sys.stderr)):
        try:
            cfg = check_config(resolve(values))
            launch = (cfg.train.accelerator, cfg.train.devices, cfg.train.strategy, cfg.train.num_nodes)
            if launch not in launches and launch != DEFAULT_LAUNCH:  # each point's lat train can run here (DDP included)
                launches.add(launch)
                check_launch(cfg.train)
        except UserError as e:
            raise UserError(f"{sweep.path}: point {i} ({', '.join(overrides(values))}): {e}") from None
        p = Point(point_id(i, values), values)
        key = settings_key(cfg, list(values)) if same_base else effective_config(cfg)
        if key in seen:
            p.status, p.same_as = "same", seen[key]
        else:
            seen[key] = p.id
        points.append(p)
    return points, base


DEFAULT_LAUNCH = ("auto", "auto", "auto", 1)
"""The schema's distribution settings: runnable on every machine (one process, or DDP over its
GPUs), so a sweep of them needs no check (which would import Lightning)."""


def plain_settings(keys: list[str]) -> bool:
    """Whether ``keys`` are plain dotted settings (``train.lr``), none inside another."""
    return all("." in k and k.split(".")[0] in SECTIONS for k in keys) and not any(a != b and b.startswith(a + ".") for a in keys for b in keys)


def settings_key(cfg: Config, keys: list[str]) -> str:
    """:func:`effective_config` for points that are one base config with the settings ``keys``
    replaced: two such points are the same run exactly when these keys' values (the preview's
    read through its strategy) agree, so only they are compared."""
    d = {k: setting(cfg, k) for k in keys if k not in UNCOMPARED and not k.startswith("preview.")}
    d["preview"] = strategy_params(asdict(cfg.preview))
    return json.dumps(d, sort_keys=True, default=str)


UNCOMPARED = ("run.name", "run.root", "run.resume", "train.keep_checkpoint")
"""Settings that cannot change a result (what :func:`effective_config` leaves out)."""

PROGRESS_FROM = 200
"""Points from which checking them shows a progress bar."""


def point_resolver(base_args: list[str], base: Config) -> Callable[[dict[str, Any]], Config]:
    """values -> the point's config, as ``load_config(base_args + overrides(values))`` gives it.

    A point made of plain settings (``train.lr``, not ``method`` or a config group, none inside
    another) is the base config with those settings replaced: each distinct value is parsed and
    checked once, so a grid of 10,000 points takes seconds; other points are composed whole.
    ``tests/test_sweep.py`` checks the two agree.
    """
    typed: dict[str, Any] = {}

    def resolve(values: dict[str, Any]) -> Config:
        if not plain_settings(list(values)):
            return load_config(base_args + overrides(values))
        settings = {}
        for key, value in values.items():
            (item,) = overrides({key: value})
            if item not in typed:
                typed[item] = setting(apply_overrides(base, [item], "sweep point"), key)
            settings[key] = typed[item]
        return with_settings(base, settings)

    return resolve


class SweepRun:
    """Runs the points of one sweep and keeps ``sweep.json`` / ``sweep.md`` current.

    Args:
        sweep: The sweep file.
        extra: Overrides applied to every point.
        root: Run root (points go to ``root/<sweep name>/<point id>``).
        workers: Points run at the same time.
        count: Cap on the number of points.
    """

    def __init__(self, sweep: Sweep, extra: list[str], root: Path | None = None, workers: int = 1, count: int | None = None):
        self.sweep, self.extra, self.workers = sweep, list(extra), max(1, workers)
        self.points, base = plan(sweep, extra, count)
        where = "--root" if root else "run.root"
        self.folder = parent_folder(parent_folder(root or base.run.root, where) / sweep.name, "sweep folder")
        self._lock = threading.Lock()
        self._restore()

    # ------------------------------------------------------------------ state
    def _restore(self) -> None:
        path = self.folder / STATE
        old = {}
        if path.exists():
            try:
                old = {p["id"]: p for p in json.loads(path.read_text())["points"]}
                if not all(isinstance(p["status"], str) and isinstance(p.get("metrics", {}), dict) for p in old.values()):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                raise UserError(f"{path}: damaged sweep state; delete it to start the sweep afresh") from None
        for p in self.points:
            if p.status != "same" and p.id in old and old[p.id]["status"] == "done" and (self.folder / p.id).is_dir():
                p.status, p.returncode, p.seconds, p.metrics = "done", 0, old[p.id].get("seconds"), old[p.id].get("metrics", {})

        base_args = fixed_overrides(self.sweep) + self.extra
        renamed: dict[str | None, str] = {}
        for p in self.points:
            if p.status in ("done", "same"):
                continue
            found = finished_elsewhere(self.folder, p.id, functools.partial(_point_config, base_args, p.values), old)
            if found is not None:
                if found.name != p.id:
                    renamed[p.id] = found.name
                p.id, p.status, p.returncode, p.metrics = found.name, "done", 0, headline_metrics(found)
        for p in self.points:
            if p.same_as in renamed:
                p.same_as = renamed[p.same_as]

    def save(self) -> None:
        """Write ``sweep.json`` and ``sweep.md`` atomically."""
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            state = {
                "sweep": str(self.sweep.path),
                "name": self.sweep.name,
                "method": self.sweep.method,
                "extra": self.extra,
                "points": [asdict(p) for p in self.points],
            }
            write_json(self.folder / STATE, state)
            write_text(self.folder / SUMMARY, summary_markdown(self.sweep, self.points))

    # ------------------------------------------------------------------ running
    def args(self, p: Point) -> list[str]:
        """The point's ``key=value`` overrides, including where its run folder goes."""
        resume = (self.folder / p.id / "config.yaml").exists()
        return [*self.extra, *overrides(p.values), f"run.root={self.folder}", f"run.name={p.id}", f"run.resume={str(resume).lower()}"]

    def run_point(self, p: Point) -> None:
        """Run one point's process to completion and record the outcome."""
        cmd = command(self.sweep, self.args(p))
        env = dict(os.environ)
        if self.workers > 1 and "OMP_NUM_THREADS" not in env:
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.workers))
        log = self.folder / f"{p.id}.log"
        start = time.perf_counter()
        with open(log, "w", encoding="utf-8") as out:
            out.write("$ " + " ".join(cmd) + "\n")
            out.flush()
            code = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        p.seconds, p.returncode = round(time.perf_counter() - start, 1), code
        if code == 0 and not finished(self.folder / p.id):
            p.status = "failed"
            p.error = f"exited 0 but left no finished run in {self.folder / p.id} (the sweep's command must run lat train with the point's overrides)"
        elif code == 0:
            p.status, p.error, p.metrics = "done", None, headline_metrics(self.folder / p.id)
        else:
            p.status = "interrupted" if code in (130, -2) else "failed"
            p.error = _last_line(log)
        self.save()
        _say(f"{p.id} {p.status} in {p.seconds:.0f} s  {_values_text(p.values)}" + (f"  ({p.error})" if p.error else ""))

    def run(self) -> list[Point]:
        """Run every point not done yet; returns the points (failures recorded, not raised)."""
        todo = [p for p in self.points if p.status not in ("done", "same")]
        program = command(self.sweep, [])[:1]
        if todo and program and shutil.which(program[0]) is None:
            raise UserError(f"{self.sweep.path}: command: {program[0]!r} is not a program found on PATH")
        skipped = len(self.points) - len(todo)
        _say(f"{self.sweep.name}: {len(self.points)} points, {skipped} done or duplicate, {len(todo)} to run, {self.workers} worker(s) -> {self.folder}")
        self.save()
        pool = cf.ThreadPoolExecutor(max_workers=self.workers)
        try:
            for future in cf.as_completed([pool.submit(self.run_point, p) for p in todo]):
                future.result()
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            self.save()
            raise
        pool.shutdown()
        self.save()
        return self.points


def finished_elsewhere(folder: Path, point: str, config: Callable[[], Config], recorded: dict[str, dict]) -> Path | None:
    """A finished run folder of this point that ``sweep.json`` does not record (the state file of
    another sweep file sharing the folder replaced it): the same values' hash under any index, a
    finished run (:func:`finished`), not recorded as failed, with the same resolved config apart
    from where it ran (the recorded config read through today's schema, so settings added since
    count as their defaults).

    Args:
        folder: The sweep folder.
        point: The point's id (``<index>-<hash>``).
        config: Resolves the point's config (called only when a candidate folder exists).
        recorded: ``sweep.json``'s points by id.
    """
    digest = point.split("-", 1)[1]
    runs = [r for r in sorted(folder.glob(f"*-{digest}")) if r.name not in recorded and (r / "config.yaml").is_file() and finished(r)]
    if not runs:
        return None
    want = effective_config(starting_point(config(), build=False))  # as the run recorded it
    for run in runs:
        cfg = recorded_config(run / "config.yaml")
        if cfg is not None and effective_config(cfg) == want:
            return run
    return None


def headline_metrics(run_dir: Path) -> dict[str, float]:
    """Scalar metrics of a finished run (``metrics.json``), flattened; KL at positions 1..3."""
    path = run_dir / "metrics.json"
    if not path.exists():
        return {}
    m = json.loads(path.read_text())
    out = {k: v for k, v in m.items() if isinstance(v, (int, float)) and (k.startswith(("safety/", "utility/", "train/loss")))}
    curves = m.get("divergence") or {}
    if curves:
        first = next(iter(curves.values()))
        for t, v in enumerate(first.get("kl", [])[:3], 1):
            if v is not None:
                out[f"kl/pos_{t:02d}"] = v
    return out


def summary_markdown(sweep: Sweep, points: list[Point]) -> str:
    """The sweep's table: one row per point with its values, status, time and headline metrics."""
    metric = (sweep.raw.get("metric") or {}).get("name")
    columns = [c for c in dict.fromkeys([metric, *SUMMARY_METRICS]) if c and any(c in p.metrics for p in points)]
    head = ["point", *sweep.parameters, "status", "seconds", *columns]
    lines = [f"# Sweep {sweep.name} ({sweep.method}, {len(points)} points)", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in points:
        status = f"same as {p.same_as}" if p.status == "same" else p.status
        cells = [p.id, *(str(p.values.get(k, "")) for k in sweep.parameters), status, "" if p.seconds is None else f"{p.seconds:.0f}"]
        cells += ["" if c not in p.metrics else f"{p.metrics[c]:.4g}" for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_wandb(sweep: Sweep, project: str, entity: str | None = None, count: int | None = None) -> int:
    """Register the sweep with W&B and run ``wandb agent`` on it here.

    On more machines, run ``wandb agent ENTITY/PROJECT/SWEEP_ID`` on each (the id is printed);
    every agent asks W&B for the next point, so they share one sweep.
    """
    import wandb

    body = {k: v for k, v in sweep.raw.items() if k not in LAT_KEYS}
    body.setdefault("command", list(sweep.command))
    try:
        sweep_id = wandb.sweep(body, project=project, entity=entity)
    except Exception as e:  # noqa: BLE001 - wandb raises many types when there is no server
        raise UserError(
            f"{sweep.path}: W&B could not register the sweep ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
            "without a W&B server use the local runner (lat sweep FILE)"
        ) from None
    target = "/".join(x for x in (entity, project, sweep_id) if x)
    _say(f"W&B sweep {target}; on other machines run: wandb agent {target}")
    return subprocess.call(["wandb", "agent", *(["--count", str(count)] if count else []), target])


def _values_text(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in values.items())


def _last_line(path: Path) -> str:
    lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"


def _say(msg: str) -> None:
    print(f"lat sweep: {msg}", file=sys.stderr, flush=True)


def sweep_runs(name: str = "smoke", workers: int = 2) -> Path:
    """The folder of sweep ``name`` under :func:`runs_root`, running ``sweep/<name>.yaml (a config folder)``
    first when it has no finished point (finished points are kept, so this is cheap afterwards)."""
    sweep = sweep_file(name)
    runner = SweepRun(sweep, [], runs_root(), workers=workers)
    if any(p.status not in ("done", "same") for p in runner.points):
        runner.run()
    return runner.folder


def sweep_file(spec: str | Path) -> Sweep:
    """The sweep in file ``spec``, or in ``sweep/<spec>.yaml`` of the config folders when ``spec``
    is a bare name (``map``, ``smoke``)."""
    path = Path(spec)
    if path.suffix not in (".yaml", ".yml") and len(path.parts) == 1 and not path.exists():
        path = find_config("sweep", str(spec))
    return read_sweep(path)


def _point_config(base_args: list[str], values: dict) -> Config:
    """The config of a sweep point with ``values`` over ``base_args``."""
    return load_config(base_args + overrides(values))
