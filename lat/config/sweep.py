"""Sweeps from W&B sweep YAML files: validation, grid/random expansion, and commands per point.

One YAML serves both runners. ``lat sweep FILE`` expands it here and runs every point as its own
``lat train`` process (:mod:`lat.workflows.sweep`); ``lat sweep FILE --wandb`` registers it with W&B
and starts ``wandb agent``, and W&B does the expansion. The file uses W&B's schema::

    method: grid                     # grid | random (bayes needs W&B)
    metric: {name: safety/rsr, goal: maximize}
    parameters:                      # flat dotted names of lat's config schema
      preview.mode: {values: [vanilla, real]}
      preview.m: {values: [1, 2, 4]}
      train.lr: {distribution: log_uniform_values, min: 1.0e-5, max: 1.0e-3}
    command:                         # block list: `${...}` cannot start a flow-list item
      - ${env}
      - ${interpreter}
      - -m
      - lat
      - train
      - experiment=quickstart
      - ${args_no_hyphens}
    run_cap: 20                      # random: how many points

Parameter forms: ``value``, ``values``, ``int_uniform`` / ``uniform`` (``min``, ``max``) and
``log_uniform_values`` (``min``, ``max`` > 0); as in W&B, ``min``/``max`` without a
``distribution`` mean ``int_uniform`` for integers and ``uniform`` otherwise.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, cast

import yaml
from omegaconf import OmegaConf

from lat.config import Config, apply_overrides
from lat.core.errors import UserError
from lat.core.paths import folder_name
from lat.core.registry import unknown_name

# ---------------------------------------------------------------- parameter distributions


def _constant(spec: dict, rng: random.Random) -> Any:
    return spec["value"]


def _categorical(spec: dict, rng: random.Random) -> Any:
    return rng.choice(spec["values"])


def _int_uniform(spec: dict, rng: random.Random) -> int:
    return rng.randint(int(spec["min"]), int(spec["max"]))


def _uniform(spec: dict, rng: random.Random) -> float:
    return rng.uniform(float(spec["min"]), float(spec["max"]))


def _log_uniform_values(spec: dict, rng: random.Random) -> float:
    return math.exp(rng.uniform(math.log(float(spec["min"])), math.log(float(spec["max"]))))


SAMPLERS: dict[str, Callable[[dict, random.Random], Any]] = {
    "constant": _constant,
    "categorical": _categorical,
    "int_uniform": _int_uniform,
    "uniform": _uniform,
    "log_uniform_values": _log_uniform_values,
}
"""Distribution name -> draw one value (random search)."""

DISCRETE = {"constant", "categorical"}
"""Distributions a grid can enumerate."""


def distribution(name: str, spec: Any, where: str) -> str:
    """The distribution of one parameter spec, inferred as W&B does; validated.

    Raises:
        UserError: Unknown distribution, empty ``values``, missing or reversed ``min``/``max``.
    """
    if not isinstance(spec, dict):
        raise UserError(f"{where}: parameter {name!r}: expected a mapping such as {{values: [...]}}, got {spec!r}")
    if "value" in spec:
        kind = "constant"
    elif "values" in spec:
        kind = "categorical"
        if not isinstance(spec["values"], list) or not spec["values"]:
            raise UserError(f"{where}: parameter {name!r}: 'values' must be a non-empty list")
    elif "distribution" in spec:
        kind = spec["distribution"]
    elif "min" in spec and "max" in spec:
        kind = "int_uniform" if all(isinstance(spec[k], int) for k in ("min", "max")) else "uniform"
    else:
        raise UserError(f"{where}: parameter {name!r}: give value, values, or min and max")
    if kind not in SAMPLERS:
        raise unknown_name(f"{where}: parameter {name!r}", "distribution", kind, sorted(SAMPLERS))
    if kind not in DISCRETE:
        for k in ("min", "max"):
            if not isinstance(spec.get(k), (int, float)) or isinstance(spec.get(k), bool):
                raise UserError(f"{where}: parameter {name!r}: {kind} needs a numeric {k!r}")
        if spec["min"] > spec["max"]:
            raise UserError(f"{where}: parameter {name!r}: min {spec['min']} > max {spec['max']}")
        if kind == "log_uniform_values" and spec["min"] <= 0:
            raise UserError(f"{where}: parameter {name!r}: log_uniform_values needs min > 0")
    return kind


# ---------------------------------------------------------------- values on the command line


def format_value(value: Any) -> str:
    """``value`` written so that lat's ``key=value`` parser reads back exactly ``value``.

    Strings that would parse as something else (``null``, ``1e-4``, ``a: b``, surrounding spaces)
    are quoted.
    """
    if isinstance(value, str):
        if _parses_to(value, value):
            return value
        double = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        single = "'" + value.replace("'", "''") + "'"
        for quoted in (double, single):
            if _parses_to(quoted, value):
                return quoted
        raise UserError(f"cannot write the value {value!r} as a command-line override")
    text = json.dumps(value) if isinstance(value, (bool, type(None), list, dict)) else repr(value)
    if not _parses_to(text, value):
        raise UserError(f"cannot write the value {value!r} as a command-line override")
    return text


def _parses_to(text: str, value: Any) -> bool:
    if isinstance(value, (str, int, float, bool, type(None))):  # a grid repeats each value
        return _parses_to_scalar(text, value, type(value).__name__)
    return _parses(text, value)


@functools.lru_cache(maxsize=4096)
def _parses_to_scalar(text: str, value: Any, kind: str) -> bool:  # kind: 1, 1.0 and True are equal keys
    return _parses(text, value)


def _parses(text: str, value: Any) -> bool:
    try:
        parsed = cast(dict, OmegaConf.to_container(OmegaConf.from_dotlist([f"k={text}"])))["k"]
    except Exception:  # noqa: BLE001 - any parse failure means "not this form"
        return False
    return parsed == value and type(parsed) is type(value)


def overrides(point: dict[str, Any], hyphens: bool = False) -> list[str]:
    """``key=value`` strings (``--key=value`` with ``hyphens``) for one point, in its key order."""
    dash = "--" if hyphens else ""
    return [f"{dash}{k}={format_value(v)}" for k, v in point.items()]


# ---------------------------------------------------------------- the sweep file


@dataclass(frozen=True)
class Sweep:
    """A validated sweep file.

    Attributes:
        path: The YAML file.
        name: Sweep name (the YAML's ``name`` or the file's stem); runs go to ``<root>/<name>/``.
        method: ``grid`` or ``random`` (``bayes`` is accepted only for W&B).
        parameters: Dotted config name -> W&B parameter spec, in file order.
        kinds: Dotted config name -> distribution name.
        command: The YAML's ``command`` (W&B macros unexpanded).
        run_cap: The YAML's ``run_cap`` (number of random points), if any.
        seed: Seed of the random expansion (the YAML's ``seed``, default 0).
        raw: The whole YAML as a dict (what ``--wandb`` sends to W&B).
    """

    path: Path
    name: str
    method: str
    parameters: dict[str, dict]
    kinds: dict[str, str]
    command: list[str]
    run_cap: int | None
    seed: int
    raw: dict = field(repr=False)


DEFAULT_COMMAND = ["${env}", "${interpreter}", "-m", "lat", "train", "${args_no_hyphens}"]
WANDB_METHODS = ("grid", "random", "bayes")
LAT_KEYS = {"seed"}
"""Sweep-file keys only lat reads (W&B does not define them; not sent to W&B)."""


def read_sweep(path: str | Path, base: Config | None = None) -> Sweep:
    """Read and validate a sweep file before anything runs.

    Args:
        path: The YAML file.
        base: Config the parameter names and sample values are checked against (default schema).

    Raises:
        UserError: Unreadable file, unknown method or parameter, bad parameter spec, or a value
            the config rejects; the message names the file and the parameter.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise UserError(f"{path}: cannot read sweep file ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a sweep file is a mapping with method and parameters")
    method = raw.get("method")
    if method not in WANDB_METHODS:
        raise unknown_name(f"{path}: method", "sweep method", method, list(WANDB_METHODS))
    params = raw.get("parameters")
    if not isinstance(params, dict) or not params:
        raise UserError(f"{path}: parameters: give at least one parameter")
    kinds = {name: distribution(name, spec, str(path)) for name, spec in params.items()}
    _check_names(path, params, kinds, base or Config())
    command = raw.get("command", DEFAULT_COMMAND)
    if not isinstance(command, list) or not any(a in ("${args}", "${args_no_hyphens}") for a in command):
        raise UserError(f"{path}: command: must be a list containing ${{args}} or ${{args_no_hyphens}}")
    run_cap = raw.get("run_cap")
    if run_cap is not None and (not isinstance(run_cap, int) or run_cap < 1):
        raise UserError(f"{path}: run_cap: must be a positive integer, got {run_cap!r}")
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise UserError(f"{path}: seed: must be an integer, got {seed!r}")
    name = folder_name(str(raw.get("name") or path.stem), f"{path}: name")
    return Sweep(path, name, method, dict(params), kinds, list(command), run_cap, seed, raw)


def _check_names(path: Path, params: dict, kinds: dict, base: Config) -> None:
    rng = random.Random(0)
    for name, spec in params.items():
        if name.startswith("-") or "=" in name:
            raise UserError(f"{path}: parameter {name!r}: use the flat dotted config name, e.g. preview.m")
        examples = spec["values"] if kinds[name] == "categorical" else [SAMPLERS[kinds[name]](spec, rng)]
        for value in examples:
            item = f"{name}={format_value(value)}"
            try:
                apply_overrides(base, [item], "override")
            except UserError as e:
                raise UserError(f"{path}: parameter {name!r}: {e}") from None


# ---------------------------------------------------------------- expansion


def grid_points(sweep: Sweep) -> list[dict[str, Any]]:
    """Every combination of the parameters' values, the last parameter varying fastest."""
    for name, kind in sweep.kinds.items():
        if kind not in DISCRETE:
            raise UserError(f"{sweep.path}: parameter {name!r}: a grid needs value or values, not {kind}")
    names = list(sweep.parameters)
    choices = [sweep.parameters[n]["values"] if sweep.kinds[n] == "categorical" else [sweep.parameters[n]["value"]] for n in names]
    return [dict(zip(names, combo)) for combo in itertools.product(*choices)]


def random_points(sweep: Sweep, count: int | None = None) -> list[dict[str, Any]]:
    """``count`` (or the file's ``run_cap``) independent draws, seeded by the file's ``seed``."""
    n = count or sweep.run_cap
    if not n:
        raise UserError(f"{sweep.path}: random search needs run_cap in the file or --count")
    rng = random.Random(sweep.seed)
    return [{name: SAMPLERS[kind](sweep.parameters[name], rng) for name, kind in sweep.kinds.items()} for _ in range(n)]


EXPANDERS: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "grid": lambda sweep, count=None: grid_points(sweep)[:count] if count else grid_points(sweep),
    "random": random_points,
}
"""Sweep method -> expansion into points (the local runner's methods)."""


def expand(sweep: Sweep, count: int | None = None) -> list[dict[str, Any]]:
    """The sweep's points (dotted name -> value), in run order.

    Raises:
        UserError: A method the local runner cannot expand (``bayes`` needs W&B's server).
    """
    if sweep.method not in EXPANDERS:
        raise UserError(f"{sweep.path}: method {sweep.method!r} needs W&B (lat sweep --wandb); the local runner does {', '.join(EXPANDERS)}")
    return EXPANDERS[sweep.method](sweep, count)


def point_id(index: int, point: dict[str, Any]) -> str:
    """A stable folder name for a point: its index and a hash of its values."""
    digest = hashlib.sha256(json.dumps(point, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{index:03d}-{digest}"


def command(sweep: Sweep, args: list[str]) -> list[str]:
    """The point's command line: the file's ``command`` with W&B's macros expanded.

    ``${args}`` becomes ``--key=value`` strings, ``${args_no_hyphens}`` ``key=value`` strings,
    ``${interpreter}`` this Python, ``${program}`` the file's ``program``; ``${env}`` is dropped.

    Args:
        sweep: The sweep.
        args: ``key=value`` overrides of the point (run folder included).
    """
    macros: dict[str, list[str]] = {
        "${env}": [],
        "${interpreter}": [sys.executable],
        "${program}": [str(sweep.raw.get("program", ""))],
        "${args}": ["--" + a for a in args],
        "${args_no_hyphens}": list(args),
    }
    out: list[str] = []
    for item in sweep.command:
        out.extend(macros.get(str(item), [str(item)]))
    return out


# ---------------------------------------------------------------- under a W&B agent


def agent_overrides(config: dict[str, Any]) -> list[str]:
    """``key=value`` overrides from a W&B run's config (the sweep's values, exactly typed).

    W&B locks a sweep run's config to the sweep's values; under ``wandb agent`` the training
    entry point therefore builds its overrides from ``wandb.config`` rather than from the
    strings on its command line (which lose quoting, e.g. a trailing space in a prefix).
    Keys that are not dotted config names (W&B's own ``_wandb``, ...) are skipped.
    """
    return [f"{k}={format_value(v)}" for k, v in config.items() if "." in k and not k.startswith("_")]
