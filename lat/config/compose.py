"""Composition of a config: dataclass schema < YAML layers < command-line overrides.

Resolution order (later wins)::

    schema defaults
    < configs/<group>/<name>.yaml selected by an experiment's ``defaults:`` mapping
    < configs/experiment/<NAME>.yaml                       (``experiment=NAME``)
    < configs/<group>/<name>.yaml selected on the command line (``model=tiny``)
    < any YAML file given as ``config=path.yaml``
    < dotted overrides (``preview.m=4`` or ``--preview.m=4``)

Unknown keys and wrong types fail with one line naming the key and where it came from. Code below
the CLI sees the dataclasses only (:func:`load_config` returns a :class:`Config`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, List, cast

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lat.config.schema import Config, check_ranges
from lat.config.secrets import redact, redact_tree, secrets
from lat.core.errors import UserError
from lat.core.paths import regular_file
from lat.core.registry import known_names

SECTIONS = ("model", "lora", "data", "preview", "train", "eval", "logging", "run", "align", "defense")
NON_GROUP_DIRS = {"experiment", "sweep", "method", "benchmark"}


PACKAGE_CONFIGS = Path(__file__).resolve().parent.parent / "configs"
"""The YAML configs shipped inside the package (``lat/configs/``)."""


def config_dirs() -> list[Path]:
    """Where config files are looked up, first match wins: each folder of ``$LAT_CONFIG_DIR``
    (``os.pathsep``-separated), a ``configs/`` folder in the working directory, the package's."""
    dirs = [Path(p) for p in os.environ.get("LAT_CONFIG_DIR", "").split(os.pathsep) if p]
    for d in dirs:
        if not d.is_dir():
            raise UserError(f"LAT_CONFIG_DIR: {d} is not a folder")
    if (Path.cwd() / "configs").is_dir():
        dirs.append(Path.cwd() / "configs")
    dirs.append(PACKAGE_CONFIGS)
    return list(dict.fromkeys(d.resolve() for d in dirs))


def available(group: str, roots: Sequence[Path] | None = None) -> list[str]:
    """Names of the config files of ``group`` (``experiment``, ``model``, ``sweep`` ...) in any folder."""
    return sorted({p.stem for root in roots or config_dirs() for p in (root / group).glob("*.yaml")})


def find_config(group: str, name: str, roots: Sequence[Path] | None = None) -> Path:
    """``<root>/<group>/<name>.yaml`` in the first folder of ``roots`` (default :func:`config_dirs`)
    that has it.

    Raises:
        UserError: No folder has it (names the folders searched and the known names).
    """
    roots = list(roots or config_dirs())
    for root in roots:
        path = root / group / f"{name}.yaml"
        if path.is_file():
            return path
    searched = ", ".join(str(r / group) for r in roots)
    raise UserError(f"{group}={name}: no {name}.yaml in {searched}; {known_names(name, available(group, roots))}")


def _load_yaml(path: Path) -> DictConfig:
    regular_file(path, "no such config file")
    try:
        cfg = OmegaConf.load(path)  # OmegaConf's loader is a yaml.SafeLoader
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise UserError(f"{path}: invalid YAML{where} ({e.problem or e.context or _first_line(e)})") from None
    except Exception as e:  # noqa: BLE001 - OmegaConf's YAML errors have many types
        raise UserError(f"{path}: invalid YAML ({_first_line(e)})") from None
    if not isinstance(cfg, DictConfig):
        raise UserError(f"{path}: expected a mapping at the top level")
    return cfg


def _check_shapes(layer: Any, source: str, schema: Any = None, prefix: str = "") -> None:
    """Refuse a value whose shape differs from the schema's, naming the setting: a section
    (``lora``, ``eval.judge`` ...) given as anything but a mapping, a list setting (``eval.jsr_k``,
    ``data.probes``) given a mapping or a scalar. OmegaConf's own merge errors name no key (or
    speak of its node types)."""
    schema = _schema() if schema is None else schema
    if not isinstance(layer, DictConfig) or not isinstance(schema, DictConfig):
        return
    for key in layer.keys():
        if key not in schema:
            continue  # an unknown key: the merge names it
        name, value, expected = prefix + str(key), layer._get_node(key), schema._get_node(key)
        if value is None or value._is_none() or value._is_interpolation():
            continue
        if isinstance(expected, DictConfig) and not isinstance(value, DictConfig):
            kind = "a list" if isinstance(value, ListConfig) else f"{value._value()!r}"
            raise UserError(f"config ({source}): {name}: expected a mapping of settings, got {kind}")
        if isinstance(expected, ListConfig) and not isinstance(value, ListConfig):
            kind = "a mapping" if isinstance(value, DictConfig) else f"{value._value()!r}"
            raise UserError(f"config ({source}): {name}: expected a list, got {kind}")
        if isinstance(expected, DictConfig):
            _check_shapes(value, source, expected, f"{name}.")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def parse_overrides(args: List[str]) -> list[tuple[str, str]]:
    """Split ``key=value`` / ``--key=value`` arguments into (key, value) pairs.

    Both forms are accepted so W&B's ``${args}`` and ``${args_no_hyphens}`` command macros work.
    """
    pairs = []
    for arg in args:
        body = arg[2:] if arg.startswith("--") else arg
        key, sep, value = body.partition("=")
        if not sep or not key:
            raise UserError(f"override {arg!r}: expected key=value (or --key=value)")
        pairs.append((key.strip(), value))
    return pairs


def _merge(base: DictConfig, layer: Any, source: str) -> DictConfig:
    _check_shapes(layer, source)
    try:
        return cast(DictConfig, OmegaConf.merge(base, layer))
    except TypeError:  # OmegaConf's "Cannot merge incompatible container types"
        raise UserError(f"config ({source}): a list where the schema has a mapping, or the reverse") from None
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or ""
        msg = getattr(e, "msg", None) or _first_line(e)
        msg = msg.strip().splitlines()[0]
        if "not in" in msg or "Key '" in msg and "not" in msg:
            hint = "; benchmark presets are a list: eval.benchmarks=[NAME, ...]" if key == "benchmark" else ""
            raise UserError(f"config ({source}): unknown key {key!r}{hint}") from None
        raise UserError(f"config ({source}): {key + ': ' if key else ''}{msg}") from None


def _override_layer(item: str) -> DictConfig:
    """The config layer of one ``key=value`` override (the value read as YAML).

    Raises:
        UserError: A key that indexes into a list (``data.probes[0].task``: OmegaConf would make
            a mapping of it), or a value that is not valid YAML.
    """
    key = item.partition("=")[0]
    if "[" in key or "]" in key:
        raise UserError(f"override {item!r}: list items cannot be set one by one; give the whole list ({key.partition('[')[0]}=[...]) or use a config file")
    try:
        return OmegaConf.from_dotlist([item])
    except yaml.MarkedYAMLError as e:
        raise UserError(f"override {item!r}: invalid YAML value ({e.problem or e.context or 'cannot parse'})") from None
    except (OmegaConfBaseException, yaml.YAMLError) as e:
        raise UserError(f"override {item!r}: {_first_line(e)}") from None


@functools.lru_cache(maxsize=1)
def _schema() -> DictConfig:
    """The typed default config (built once; merges copy it, never change it)."""
    return OmegaConf.structured(Config)


def recorded_config(path: Path) -> Config | None:
    """The config a run folder's ``config.yaml`` records, read through today's schema (settings
    added since take their defaults); None when it no longer fits the schema."""
    try:
        return cast(Config, OmegaConf.to_object(OmegaConf.merge(_schema(), OmegaConf.load(path))))
    except Exception:  # noqa: BLE001 - a setting since removed or retyped: not comparable
        return None


def _merge_layers(base: DictConfig, layers: list[tuple[Any, str]]) -> DictConfig:
    """Merge ``layers`` into ``base`` in order, in one pass (each merge copies the whole config);
    if that fails, merge them one by one to name the layer at fault."""
    try:
        return cast(DictConfig, OmegaConf.merge(base, *(layer for layer, _ in layers)))
    except (OmegaConfBaseException, TypeError):
        for layer, source in layers:
            base = _merge(base, layer, source)
        return base


def _experiment_layers(name: str, roots: Sequence[Path]) -> list[tuple[DictConfig, str]]:
    path = find_config("experiment", name, roots)
    body = _load_yaml(path)
    defaults = body.pop("defaults", None) or {}
    if not isinstance(defaults, DictConfig):
        raise UserError(f"{path}: 'defaults' must map a group to a file name, e.g. {{model: tiny}}")
    base = str(defaults.pop("experiment")) if "experiment" in defaults else None
    if base == name:
        raise UserError(f"{path}: defaults.experiment names the experiment itself")
    layers = _experiment_layers(base, roots) if base else []  # an experiment may extend another
    layers += [(_group_layer(str(g), str(n), roots), f"{path}: defaults.{g!s}") for g, n in defaults.items()]
    return layers + [(body, str(path))]


def _method_layer(name: str, roots: Sequence[Path]) -> DictConfig:
    """configs/method/NAME.yaml (any sections) plus ``method: NAME``."""
    path = find_config("method", name, roots)
    body = _load_yaml(path)
    body["method"] = name
    return body


def _group_layer(group: str, name: str, roots: Sequence[Path]) -> DictConfig:
    if group not in SECTIONS:
        raise UserError(f"{group}={name}: not a config group; groups: {', '.join(SECTIONS)}")
    return OmegaConf.create({group: _load_yaml(find_config(group, name, roots))})


def load_config(args: List[str] | None = None, roots: Sequence[Path] | None = None) -> Config:
    """Build the run configuration from YAML layers and command-line overrides.

    Args:
        args: ``key=value`` / ``--key=value`` strings; ``experiment=NAME``, ``<group>=NAME``
            (group YAML under configs/<group>/) and ``config=FILE`` select files.
        roots: Config folders searched in order; default :func:`config_dirs`.

    Returns:
        The typed, validated configuration.

    Raises:
        UserError: Unknown key, wrong type, missing file (one line naming it).
    """
    roots = list(roots or config_dirs())
    pairs = parse_overrides(args or [])
    layers: list[tuple[Any, str]] = []
    experiment = next((v for k, v in pairs if k == "experiment"), None)
    if experiment:
        layers += _experiment_layers(experiment, roots)
        layers.append((OmegaConf.create({"experiment": experiment}), "command line"))
    dotlist = []
    for key, value in pairs:
        if key == "experiment":
            continue
        if key == "config":
            layers.append((_load_yaml(Path(value)), value))
        elif key == "method":
            layers.append((_method_layer(value, roots), f"method={value}"))
        elif key in SECTIONS:
            layers.append((_group_layer(key, value, roots), f"{key}={value}"))
        else:
            dotlist.append(f"{key}={value}")
    for item in dotlist:
        layers.append((_override_layer(item), f"override {item!r}"))
    cfg = _merge_layers(_schema(), layers)
    try:
        return check_ranges(cast(Config, OmegaConf.to_object(cfg)))
    except OmegaConfBaseException as e:
        raise UserError(f"config: {getattr(e, 'full_key', '')}: {_first_line(e)}") from None


def apply_overrides(cfg: Config, overrides: List[str], source: str = "overrides") -> Config:
    """A copy of ``cfg`` with dotted ``key=value`` overrides (and ``method=NAME``) applied,
    validated like the CLI's."""
    layers = []
    for key, value in parse_overrides(overrides):
        item = f"{key}={value}"
        if key == "method":
            layers.append((_method_layer(value, config_dirs()), f"{source}: {item}"))
            continue
        layers.append((_override_layer(item), f"{source}: {item}"))
    return check_ranges(cast(Config, OmegaConf.to_object(_merge_layers(OmegaConf.structured(cfg), layers))))


def setting(cfg: Any, key: str) -> Any:
    """The value of dotted setting ``key`` (``train.lr``) in ``cfg``."""
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def with_settings(cfg: Config, values: dict[str, Any]) -> Config:
    """``cfg`` with dotted settings replaced by already-typed values (``dataclasses.replace``
    down each path), range rules checked; the values come from :func:`apply_overrides`, which
    validated them.

    Raises:
        UserError: A range rule the combination breaks.
    """

    def put(obj: Any, parts: list[str], value: Any) -> Any:
        if not parts:
            return value
        return dataclasses.replace(obj, **{parts[0]: put(getattr(obj, parts[0]), parts[1:], value)})

    for key, value in values.items():
        cfg = put(cfg, key.split("."), value)
    return check_ranges(cfg)


def to_yaml(cfg: Config) -> str:
    """The resolved configuration as YAML (what every run folder stores as config.yaml).

    Secrets never reach a file: a value of a secret environment variable that ended up in a
    setting (a key pasted into a URL, a tag ...) is written as ``<redacted $NAME>``.
    """
    return redact(OmegaConf.to_yaml(OmegaConf.structured(cfg)), secrets(cfg))


def to_dict(cfg: Config) -> dict:
    """The resolved configuration as a plain nested dict (for loggers), secrets redacted."""
    return redact_tree(dataclasses.asdict(cfg), secrets(cfg))
