"""Packaging: environment.yml and setup.cfg declare the same packages."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _setup_cfg() -> dict[str, str]:
    cp = configparser.ConfigParser()
    cp.read(ROOT / "setup.cfg")
    reqs = cp["options"]["install_requires"].split("\n") + cp["options.extras_require"]["dev"].split("\n")
    return {_name(r): r.strip() for r in reqs if r.strip() and not r.strip().startswith("#")}


def _environment_yml() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return {_name(r): r for r in pip if not r.startswith("-e")}


def test_same_packages():
    assert set(_setup_cfg()) == set(_environment_yml())


def test_same_version_bounds_except_the_cpu_torch_pin():
    cfg, env = _setup_cfg(), _environment_yml()
    differing = {k for k in cfg if cfg[k].replace(" ", "") != env[k].replace(" ", "")}
    assert differing == {"torch"} and env["torch"] == "torch==2.13.0"


def test_ci_installs_pinned_torch_and_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    make = (ROOT / "Makefile").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "TORCH ?= torch==2.13.0" in make
    assert "make setup" in ci and "make test" in ci
    assert "make test" in readme.split("\n## ")[0]  # on the README's first screen


def test_a_wheel_carries_the_configs_and_runs_the_smoke_experiment_outside_the_checkout(tmp_path):
    import os
    import subprocess
    import sys

    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)], check=True, capture_output=True
    )
    (wheel,) = wheels.glob("lat-*.whl")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)], check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "LAT_CACHE": str(tmp_path / "cache")}
    env.pop("LAT_CONFIG_DIR", None)
    where = subprocess.run([sys.executable, "-c", "import lat; print(lat.__file__)"], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert where.stdout.strip().startswith(str(site))  # the installed wheel, not the checkout
    res = subprocess.run(
        [sys.executable, "-m", "lat", "run", "experiment=smoke", f"run.root={tmp_path / 'runs'}"], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "runs" / "smoke" / "results.csv").is_file()


def test_the_lock_pins_every_declared_package_but_torch():
    locked = {
        _name(line.split("==")[0]): line.split("==")[1] for line in (ROOT / "requirements.lock").read_text().splitlines() if line and not line.startswith("#")
    }
    declared = set(_setup_cfg()) - {"torch"}
    assert declared <= set(locked), sorted(declared - set(locked))
    assert "torch" not in locked  # installed first from the Makefile's TORCH (CPU or CUDA build)


def test_no_file_of_the_package_is_git_ignored():
    import shutil
    import subprocess

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(
        ["git", "ls-files", "--others", "--ignored", "--exclude-standard", "lat", "tests", "experiments"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert [f for f in ignored if f.endswith((".py", ".yaml", ".jsonl", ".ipynb"))] == []
