"""Sweeps: W&B YAML validation, grid/random expansion, command forms, the local runner."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from lat.cli import main
from lat.config import load_config
from lat.config.sweep import agent_overrides, command, expand, format_value, point_id, read_sweep
from lat.core.errors import UserError
from lat.workflows.sweep import SweepRun, plan

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


GRID = """\
method: grid
parameters:
  preview.mode: {values: [real, virtual]}
  preview.m: {values: [2, 4]}
  lora.r: {value: 8}
"""


def test_grid_expansion_matches_hand_computed_points(tmp_path):
    points = expand(read_sweep(_write(tmp_path, GRID)))
    assert points == [
        {"preview.mode": "real", "preview.m": 2, "lora.r": 8},
        {"preview.mode": "real", "preview.m": 4, "lora.r": 8},
        {"preview.mode": "virtual", "preview.m": 2, "lora.r": 8},
        {"preview.mode": "virtual", "preview.m": 4, "lora.r": 8},
    ]


def test_random_expansion_is_seeded_and_within_bounds(tmp_path):
    path = _write(
        tmp_path,
        """\
        method: random
        run_cap: 50
        seed: 3
        parameters:
          train.lr: {distribution: log_uniform_values, min: 1.0e-5, max: 1.0e-3}
          lora.r: {min: 2, max: 6}
          lora.dropout: {distribution: uniform, min: 0.0, max: 0.2}
          preview.mode: {values: [vanilla, real]}
        """,
    )
    a, b = expand(read_sweep(path)), expand(read_sweep(path))
    assert a == b and len(a) == 50
    assert all(1e-5 <= p["train.lr"] <= 1e-3 for p in a)
    assert {p["lora.r"] for p in a} <= set(range(2, 7)) and all(isinstance(p["lora.r"], int) for p in a)
    assert all(0.0 <= p["lora.dropout"] <= 0.2 for p in a)
    assert {p["preview.mode"] for p in a} == {"vanilla", "real"}
    assert len(expand(read_sweep(path), count=5)) == 5


@pytest.mark.parametrize(
    "text, needle",
    [
        ("method: hyperband\nparameters: {lora.r: {value: 8}}\n", "method: unknown sweep method 'hyperband'"),
        ("method: grid\nparameters: {lora.rank: {values: [8]}}\n", "lora.rank"),
        ("method: grid\nparameters: {lora.r: {values: []}}\n", "'values' must be a non-empty list"),
        ("method: random\nrun_cap: 2\nparameters: {train.lr: {distribution: uniform, min: 0.1, max: 0.01}}\n", "min 0.1 > max 0.01"),
        ("method: random\nrun_cap: 2\nparameters: {train.lr: {distribution: beta, min: 0, max: 1}}\n", "unknown distribution 'beta'"),
        ("method: grid\nparameters: {lora.r: {values: [eight]}}\n", "lora.r"),
        ("method: grid\nparameters: {}\n", "give at least one parameter"),
        ("method: grid\nparameters: {preview.mode: {values: [real, sideways]}}\n", "unknown strategy 'sideways'"),
        ("method: grid\nparameters: {lora.r: {values: [8]}}\ncommand: [python, train.py]\n", "${args}"),
    ],
)
def test_bad_sweep_files_exit_2_with_one_line_before_running(tmp_path, capsys, text, needle):
    path = _write(tmp_path, text)
    code = main(["sweep", str(path), "--root", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and len(err.splitlines()) == 1 and str(path) in err
    assert not (tmp_path / "runs").exists()


def test_grid_rejects_continuous_and_local_runner_rejects_bayes(tmp_path):
    grid = read_sweep(_write(tmp_path, "method: grid\nparameters: {train.lr: {min: 0.1, max: 0.2}}\n"))
    with pytest.raises(UserError, match="a grid needs value or values"):
        expand(grid)
    bayes = read_sweep(_write(tmp_path, "method: bayes\nparameters: {lora.r: {values: [4, 8]}}\n", "b.yaml"))
    with pytest.raises(UserError, match="needs W&B"):
        expand(bayes)


@pytest.mark.parametrize(
    "value", ["Let's solve this problem. ", "a: b", "null", "1e-4", " lead", "back\\slash 'q'", 3, 2e-4, 1e-05, 1e20, True, None, [0.5, 0.999]]
)
def test_format_value_round_trips_through_the_config_parser(value):
    from omegaconf import OmegaConf

    parsed = OmegaConf.to_container(OmegaConf.from_dotlist([f"k={format_value(value)}"]))["k"]
    assert parsed == value and type(parsed) is type(value)


def test_args_and_args_no_hyphens_command_forms_both_parse(tmp_path):
    point = {"preview.prefix": "Let's deal with this situation. ", "preview.mode": "virtual", "train.lr": 1e-4, "lora.r": 16}
    from lat.config.sweep import overrides

    for macro in ("${args}", "${args_no_hyphens}"):
        sweep = read_sweep(
            _write(
                tmp_path,
                f"method: grid\nparameters: {{lora.r: {{value: 16}}}}\ncommand:\n  - ${{interpreter}}\n  - -m\n  - lat\n  - train\n  - experiment=smoke\n  - {macro}\n",
            )
        )
        cmd = command(sweep, overrides(point))
        assert cmd[:4] == [sys.executable, "-m", "lat", "train"]
        assert all(a.startswith("--") for a in cmd[5:]) == (macro == "${args}")
        cfg = load_config(cmd[4:])
        assert (cfg.preview.prefix, cfg.preview.mode, cfg.train.lr, cfg.lora.r, cfg.experiment) == (
            "Let's deal with this situation. ",
            "virtual",
            1e-4,
            16,
            "smoke",
        )


def test_points_with_the_same_resolved_config_run_once(tmp_path):
    sweep = read_sweep(
        _write(
            tmp_path,
            """\
        method: grid
        parameters:
          preview.mode: {values: [vanilla, real]}
          preview.m: {values: [1, 2, 4]}
        command:
          - lat
          - train
          - experiment=smoke
          - ${args_no_hyphens}
        """,
        )
    )
    points, _ = plan(sweep, [])
    vanilla = [p for p in points if p.values["preview.mode"] == "vanilla"]
    assert [p.status for p in vanilla] == ["pending", "same", "same"]
    assert {p.same_as for p in vanilla[1:]} == {vanilla[0].id}
    assert all(p.status == "pending" for p in points if p.values["preview.mode"] == "real")


def test_keeping_the_checkpoint_does_not_make_another_point(tmp_path):
    sweep = read_sweep(
        _write(
            tmp_path,
            """\
        method: grid
        parameters:
          train.keep_checkpoint: {values: [true, false]}
          train.lr: {values: [1.0e-3, 1.0e-2]}
        command: [lat, train, experiment=smoke, "${args_no_hyphens}"]
        """,
        )
    )
    points, _ = plan(sweep, [])
    assert [(p.values["train.keep_checkpoint"], p.status) for p in points] == [(True, "pending")] * 2 + [(False, "same")] * 2


def test_shipped_sweeps_validate_and_expand(tmp_path):
    import yaml

    for path in sorted((ROOT / "lat" / "configs" / "sweep").glob("*.yaml")):
        if path.stem == "map":  # 576 points: tests/test_report_map.py plans its slices, which cover every value
            continue
        if path.stem == "attack":  # 336 points composed whole (method files): every method and poison share, one lr / epochs / seed
            raw = yaml.safe_load(path.read_text())
            for key in ("train.lr", "train.epochs", "run.seed"):
                raw["parameters"][key] = {"values": raw["parameters"][key]["values"][:1]}
            path = tmp_path / "attack.yaml"
            path.write_text(yaml.safe_dump(raw))
        sweep = read_sweep(path)
        points, _ = plan(sweep, [])
        assert points, path
    length = plan(read_sweep(ROOT / "lat" / "configs" / "sweep" / "preview_length.yaml"), [])[0]
    assert len(length) == 2 * 7 * 3 and sum(p.status != "same" for p in length) == 8 * 3


FAKE_TRAIN = """\
import json, os, sys
from pathlib import Path
args = dict(a.lstrip("-").split("=", 1) for a in sys.argv[1:])
with open(os.environ["FAKE_TRAIN_LOG"], "a") as f:
    f.write(args["run.name"] + " " + args["run.resume"] + "\\n")
if args["lora.r"] == "13":
    print("boom: rank 13 is unlucky", file=sys.stderr)
    sys.exit(1)
run = Path(args["run.root"]) / args["run.name"]
run.mkdir(parents=True, exist_ok=True)
(run / "config.yaml").write_text("{}")
(run / "adapter").mkdir(exist_ok=True)
(run / "metrics.json").write_text(json.dumps({"safety/rsr": int(args["lora.r"]) / 100, "global_step": 1}))
"""


def _fake_sweep(tmp_path, monkeypatch, ranks="[4, 13, 8]"):
    monkeypatch.setenv("FAKE_TRAIN_LOG", str(tmp_path / "calls.log"))
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    return read_sweep(
        _write(
            tmp_path,
            f"""\
        name: fake
        method: grid
        parameters:
          lora.r: {{values: {ranks}}}
        command:
          - ${{interpreter}}
          - {script}
          - ${{args_no_hyphens}}
        """,
        )
    )


def test_runner_records_a_failure_goes_on_and_skips_finished_points_on_rerun(tmp_path, monkeypatch):
    sweep = _fake_sweep(tmp_path, monkeypatch)
    points = SweepRun(sweep, [], tmp_path / "runs", workers=2).run()
    assert [p.status for p in points] == ["done", "failed", "done"]
    assert points[1].error == "boom: rank 13 is unlucky" and points[1].returncode == 1
    assert points[0].metrics == {"safety/rsr": 0.04}
    state = json.loads((tmp_path / "runs" / "fake" / "sweep.json").read_text())
    assert [p["status"] for p in state["points"]] == ["done", "failed", "done"]
    assert "failed" in (tmp_path / "runs" / "fake" / "sweep.md").read_text()
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert len(calls) == 3
    again = SweepRun(sweep, [], tmp_path / "runs").run()  # only the failed point runs again
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert len(calls) == 4 and calls[-1].startswith(points[1].id)
    assert [p.status for p in again] == ["done", "failed", "done"]


def test_a_command_that_exits_0_without_a_finished_run_is_a_failed_point(tmp_path):
    sweep = read_sweep(
        _write(
            tmp_path,
            """\
        name: echo
        method: grid
        parameters:
          lora.r: {values: [4]}
        command: [echo, "${args_no_hyphens}"]
        """,
        )
    )
    (point,) = SweepRun(sweep, [], tmp_path / "runs").run()
    assert point.status == "failed" and point.returncode == 0 and point.metrics == {}
    assert point.error is not None and "left no finished run" in point.error


def test_plain_points_resolve_as_the_whole_config_does(tmp_path):
    from lat.config.sweep import overrides
    from lat.workflows.sweep import point_resolver

    base_args = ["experiment=smoke", "train.lr=0.001"]
    base = load_config(base_args)
    resolve = point_resolver(base_args, base)
    points = [
        {"preview.mode": "virtual", "preview.prefix": "1e-4", "train.lr": 0.5, "eval.jsr_k": [3, 5]},
        {"lora.r": 4, "lora.target_modules": ["q_proj"], "data.max_train_samples": None, "run.seed": 3},
        {"method": "sdft", "train.lr": 0.01},  # a config file: composed whole
        {"train.epochs": 2, "train.max_steps": -1},
    ]
    for values in points:
        assert resolve(values) == load_config(base_args + overrides(values)), values
    with pytest.raises(UserError, match=r"data\.val_size: must be >= 0"):  # a range rule
        resolve({"data.val_size": -1})


def test_unfinished_point_resumes_its_run_folder(tmp_path, monkeypatch):
    sweep = _fake_sweep(tmp_path, monkeypatch, "[4]")
    runner = SweepRun(sweep, [], tmp_path / "runs")
    started = runner.folder / runner.points[0].id
    started.mkdir(parents=True)
    (started / "config.yaml").write_text("{}")  # as left by an interrupted `lat train`
    runner.run()
    assert (tmp_path / "calls.log").read_text().split() == [runner.points[0].id, "true"]


def _finish(run: Path, overrides: list[str]) -> None:
    """Leave ``run`` as a finished `lat train` leaves it: its resolved config and a final adapter."""
    from lat.config import to_yaml

    (run / "adapter").mkdir(parents=True)
    (run / "config.yaml").write_text(to_yaml(load_config([*overrides, f"run.root={run.parent}", f"run.name={run.name}"])))
    (run / "metrics.json").write_text(json.dumps({"safety/rsr": 0.5, "global_step": 3}))


def test_a_point_finished_under_another_index_is_reused_not_trained_again(tmp_path, monkeypatch):
    # A narrowed slice of a grid (here: rank 8 only) gives its points other indices than the full
    # grid; both share one folder, and sweep.json holds only the last file's points.
    full = _fake_sweep(tmp_path, monkeypatch, "[4, 8]")
    first = SweepRun(full, [], tmp_path / "runs")
    eight = first.points[1]
    _finish(first.folder / eight.id, ["lora.r=8"])
    metrics = first.folder / eight.id / "metrics.json"
    metrics.write_text(json.dumps({"safety/rsr": 0.5}))  # killed before its last write: not finished
    assert SweepRun(_fake_sweep(tmp_path, monkeypatch, "[8]"), [], tmp_path / "runs").points[0].status == "pending"
    metrics.write_text(json.dumps({"safety/rsr": 0.5, "global_step": 3}))
    recorded = first.folder / eight.id / "config.yaml"  # written before a setting existed: it counts as its default
    recorded.write_text("\n".join(ln for ln in recorded.read_text().splitlines() if "packing:" not in ln))
    narrowed = SweepRun(_fake_sweep(tmp_path, monkeypatch, "[8]"), [], tmp_path / "runs")
    (point,) = narrowed.points
    fresh = point_id(0, {"lora.r": 8})
    assert fresh != eight.id and fresh.split("-")[1] == eight.id.split("-")[1]  # same values, other index
    assert point.id == eight.id and point.status == "done" and point.metrics == {"safety/rsr": 0.5}
    assert f"run.name={eight.id}" in narrowed.args(point)
    narrowed.run()
    assert not (tmp_path / "calls.log").exists()  # nothing trained
    # A folder of the same values but another resolved config (other overrides) is not reused.
    other = SweepRun(_fake_sweep(tmp_path, monkeypatch, "[8]"), ["lora.alpha=64"], tmp_path / "runs")
    assert other.points[0].status == "pending" and other.points[0].id == fresh


def test_lat_sweep_cli_exit_code_and_dry_run(tmp_path, capsys, monkeypatch):
    sweep = _fake_sweep(tmp_path, monkeypatch)
    assert main(["sweep", str(sweep.path), "--root", str(tmp_path / "runs"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("fake_train.py") == 3 and not (tmp_path / "calls.log").exists()
    assert main(["sweep", str(sweep.path), "--root", str(tmp_path / "runs")]) == 1  # one point failed
    assert "1 point(s) failed" in capsys.readouterr().err


def test_agent_overrides_take_the_exact_values_from_wandb_config(monkeypatch):
    import types

    config = {"preview.prefix": "Let's solve this problem. ", "train.lr": 3e-4, "lora.r": 8, "_wandb": {"x": 1}}
    assert load_config(agent_overrides(config)).preview.prefix == "Let's solve this problem. "
    fake = types.SimpleNamespace(run=None, init=lambda: types.SimpleNamespace(config=config))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    from lat.cli import agent_overrides as cli_agent_overrides

    monkeypatch.delenv("WANDB_SWEEP_ID", raising=False)
    assert cli_agent_overrides() == []
    monkeypatch.setenv("WANDB_SWEEP_ID", "abc123")
    cfg = load_config(["experiment=smoke", "preview.prefix=ignored", *cli_agent_overrides()])
    assert (cfg.preview.prefix, cfg.train.lr, cfg.lora.r, cfg.logging.wandb_mode) == ("Let's solve this problem. ", 3e-4, 8, "online")


def test_wandb_mode_registers_and_starts_an_agent(tmp_path, monkeypatch):
    import types

    from lat.workflows import sweep as sweep_runner

    seen = {}
    fake = types.SimpleNamespace(sweep=lambda body, project, entity: seen.update(body=body, project=project) or "sw33p")
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setattr(sweep_runner.subprocess, "call", lambda cmd: seen.update(cmd=cmd) or 0)
    path = ROOT / "lat" / "configs" / "sweep" / "lr_rank.yaml"
    assert main(["sweep", str(path), "--wandb", "--project", "lat-test", "--count", "2"]) == 0
    assert seen["project"] == "lat-test" and seen["body"]["method"] == "random" and "seed" not in seen["body"]
    assert seen["cmd"] == ["wandb", "agent", "--count", "2", "lat-test/sw33p"]

    def offline(*a, **k):
        raise ConnectionError("no server")

    monkeypatch.setattr(fake, "sweep", offline)
    with pytest.raises(UserError, match="without a W&B server use the local runner"):
        sweep_runner.run_wandb(read_sweep(path), "lat-test")
