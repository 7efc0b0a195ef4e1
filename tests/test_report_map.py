"""The map (`lat report --map`, experiments/lookahead_map.py): each preview against Vanilla FT of
its own cell, Vanilla FT against the seed, hand-computed differences, slices of the map sweep."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from lat.cli import main
from lat.config.sweep import expand, read_sweep
from lat.reporting.map import map_markdown, write_map
from lat.reporting.runs import group_runs, intervals_markdown
from lat.runs.read import find_runs
from lat.workflows.sweep import plan
from tests.test_report_runs import _run, _samples

ROOT = Path(__file__).resolve().parents[1]
N = 40
SAFE = {"seed": 36, ("vanilla", 1e-4): 34, ("real", 1e-4): 35, ("vanilla", 1e-3): 10, ("real", 1e-3): 30}
"""Prompts (of 40) judged safe, the same prompts in every seed: the first k."""


@pytest.fixture
def map_runs(tmp_path):
    root = tmp_path / "runs"
    seed = _run(root, "seed", [], {"safety/rsr": SAFE["seed"] / N}, trained=False)
    _samples(seed, [i < SAFE["seed"] for i in range(N)], [i < 4 for i in range(N)])
    for lr in (1e-4, 1e-3):
        for mode in ("vanilla", "real"):
            for s in (0, 1):
                k = SAFE[(mode, lr)]
                path = _run(
                    root,
                    f"{mode}-{lr}-{s}",
                    [f"preview.mode={mode}", f"train.lr={lr}", f"run.seed={s}"],
                    {"safety/rsr": k / N, "utility/gsm8k_acc": 0.5},
                    [0.3 if mode == "vanilla" else 0.1, 0.05],
                )
                _samples(path, [i < k for i in range(N)], [i < 20 for i in range(N)])
    return root


def test_each_preview_is_compared_with_vanilla_of_its_own_learning_rate_and_vanilla_with_the_seed(map_runs, tmp_path):
    out, rows = write_map([map_runs], tmp_path / "rep")
    by = {(r["method"], r["train.lr"]): r for r in rows}
    assert set(by) == {("mode=vanilla", 1e-4), ("mode=vanilla", 1e-3), ("mode=real", 1e-4), ("mode=real", 1e-3)}
    real = by[("mode=real", 1e-3)]
    assert real["against"] == "mode=vanilla, train.lr=0.001"
    assert real["safety/rsr"] == pytest.approx(0.75)
    assert real["safety/rsr/delta"] == pytest.approx((30 - 10) / N) and real["safety/rsr/significant"] is True
    assert by[("mode=real", 1e-4)]["safety/rsr/delta"] == pytest.approx(1 / N)
    assert by[("mode=real", 1e-4)]["safety/rsr/significant"] is False  # one prompt of 40
    vanilla = by[("mode=vanilla", 1e-3)]
    assert vanilla["against"] == "seed (not fine-tuned)"
    assert vanilla["safety/rsr/delta"] == pytest.approx((10 - 36) / N) and vanilla["safety/rsr/significant"] is True
    assert vanilla["kl/pos_01"] == pytest.approx(0.3) and vanilla["runs"] == 2
    text = (out / "map.md").read_text()
    assert "| train.lr=0.001 | mode=real | 2 | 75.0 | +50.0 [" in text and "] * |" in text
    for png in ("map_deltas.png", "map_kl.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "map.json").read_text()) == json.loads(json.dumps(rows))


def test_lat_report_differences_use_the_vanilla_of_the_same_cell(map_runs, tmp_path, capsys):
    groups = group_runs(find_runs([map_runs]))
    text = "\n".join(intervals_markdown(groups, ["safety/rsr"]))
    assert "| mode=real, train.lr=0.001 | mode=vanilla, train.lr=0.001 | +50.0 [" in text
    assert "| mode=real, train.lr=0.0001 | mode=vanilla, train.lr=0.0001 | +2.5 [" in text
    assert main(["report", str(map_runs), "--out", str(tmp_path / "rep"), "--map"]) == 0
    assert "Where do previews help?" not in capsys.readouterr().out.split("# Report")[0]
    assert (tmp_path / "rep" / "map.md").exists() and (tmp_path / "rep" / "report.md").exists()


def test_methods_named_by_method_files_are_compared_with_the_vanilla_of_their_poison_share(tmp_path):
    root = tmp_path / "runs"
    safe = {("vanilla", 0.0): 36, ("vanilla", 0.1): 20, ("virtual", 0.1): 30}
    for (method, share), k in safe.items():
        path = _run(root, f"{method}-{share}", [f"method={method}", f"data.harmful_mix={share}"], {"safety/rsr": k / N})
        _samples(path, [i < k for i in range(N)], [True] * 4)
    groups = group_runs(find_runs([root]))
    differences = "\n".join(intervals_markdown(groups, ["safety/rsr"])).split("## Differences from Vanilla FT")[1]
    row = "| data.harmful_mix=0.1, method=virtual, mode=virtual | data.harmful_mix=0.1, method=vanilla, mode=vanilla | +25.0 ["
    assert row in differences  # (30 - 20) / 40 against the poisoned Vanilla FT, not the clean one


def test_map_without_a_learning_rate_axis_plots_one_tick_per_cell(tmp_path):
    root = tmp_path / "runs"
    for epochs in (1, 2):
        for mode in ("vanilla", "real"):
            path = _run(root, f"{mode}{epochs}", [f"preview.mode={mode}", f"train.epochs={epochs}"], {"safety/rsr": 0.5})
            _samples(path, [i < (20 if mode == "vanilla" else 25) for i in range(N)], [True] * 4)
    out, rows = write_map([root], tmp_path / "rep")
    assert [r["against"] for r in rows if r["method"] == "mode=real"] == ["mode=vanilla, train.epochs=1", "mode=vanilla, train.epochs=2"]
    assert all(r["against"] is None for r in rows if r["method"] == "mode=vanilla")  # no seed run: nothing to compare with
    assert (out / "map_deltas.png").exists()
    assert "| train.epochs=1 | mode=vanilla | 1 | 50.0 | – |" in map_markdown(rows)
    assert "overrefusal" not in (out / "map.md").read_text()  # no run measured it


def _script():
    spec = importlib.util.spec_from_file_location("lookahead_map", ROOT / "experiments" / "lookahead_map.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_map_sweep_and_its_slices_expand_to_the_planned_runs(tmp_path):
    assert len(expand(read_sweep(ROOT / "lat" / "configs" / "sweep" / "map.yaml"))) == 4 * 2 * 2 * 4 * 3 * 3
    script = _script()
    expected = {"scale": 4 * 2 * 3, "preview": 3, "epochs": 2 * 3, "masked": 2 * 2, "skip": 2, "dropout": 2 * 2}  # distinct runs per seed
    values = {}
    for name, axes in script.SLICES.items():  # together they take every value of every axis of map.yaml
        points, _ = plan(read_sweep(script.slice_sweep(name, axes, 1, tmp_path)), [])
        assert sum(p.status != "same" for p in points) == expected[name], name
        for p in points:
            for k, v in p.values.items():
                values.setdefault(k, set()).add(v)
    full = read_sweep(ROOT / "lat" / "configs" / "sweep" / "map.yaml").parameters
    variants = {"preview.mask_preview": {True}, "preview.mask_answer_tokens": {6}, "preview.dropout": {0.5}}
    assert {k: set(v["values"]) for k, v in full.items() if k != "run.seed"} == {k: v for k, v in values.items() if k != "run.seed" and k not in variants}
    assert {k: values[k] for k in variants} == variants  # set by the variant slices only
    points, _ = plan(read_sweep(script.slice_sweep("preview", script.SLICES["preview"], 3, tmp_path)), [])
    assert {p.values["run.seed"] for p in points} == {0, 1, 2} and sum(p.status != "same" for p in points) == 3 * 3


def test_map_points_generate_in_fp32_though_the_quickstart_generates_in_bf16(tmp_path):
    from lat.config import load_config
    from lat.workflows.sweep import fixed_overrides

    script = _script()
    _, base = plan(read_sweep(script.slice_sweep("scale", script.SLICES["scale"], 1, tmp_path)), [])
    assert load_config(["experiment=quickstart"]).eval.precision == "auto"
    assert base.eval.precision is None  # as train.precision (32-true): the map's measured setting
    assert load_config(fixed_overrides(read_sweep(ROOT / "lat" / "configs" / "sweep" / "map.yaml"))).eval.precision is None  # the seed's map evaluation


@pytest.mark.parametrize("sweep", ["map", "preview_length", "prefix_type"])
def test_measured_sweeps_keep_the_seed_they_were_measured_on(sweep, monkeypatch):
    from lat.config import load_config
    from lat.core import precision
    from lat.workflows.seed import seed_folder
    from lat.workflows.sweep import fixed_overrides

    monkeypatch.setattr(precision, "native_bf16", lambda accelerator="auto": True)  # as on this AMX CPU
    measured_on = seed_folder(load_config(["experiment=paper_small"]))  # SFT on the fp32 base, default attention
    assert seed_folder(load_config(["experiment=quickstart"])) != measured_on  # the quickstart's is built on a bf16 base
    assert seed_folder(load_config(fixed_overrides(read_sweep(ROOT / "lat" / "configs" / "sweep" / f"{sweep}.yaml")))) == measured_on


def test_method_label_is_the_preview_mode_when_no_preview_setting_varies(tmp_path):
    root = tmp_path / "runs"
    for lr in (1e-4, 1e-3):
        _run(root, f"real{lr}", ["preview.mode=real", f"train.lr={lr}"], {"safety/rsr": 0.5})
    _, rows = write_map([root], tmp_path / "rep")
    assert [(r["method"], r["against"]) for r in rows] == [("real", None), ("real", None)]


def test_the_report_covers_every_slice_run_so_far_and_previews_meet_vanilla_of_another_slice(tmp_path):
    script = _script()
    root = tmp_path / "map"
    assert script.slice_folders(root) == []
    for name in ("preview", "scale"):
        (root / f"map_{name}").mkdir(parents=True)
    (root / "map_other").mkdir()  # not a slice of the map
    assert script.slice_folders(root) == [root / "map_scale", root / "map_preview"]
    for folder, mode, m, safe in (("map_scale", "vanilla", 6, 20), ("map_preview", "real", 2, 30)):
        path = _run(root / folder, mode, ["lora.enabled=true", "train.lr=0.001", f"preview.mode={mode}", f"preview.m={m}"], {"safety/rsr": safe / N})
        _samples(path, [i < safe for i in range(N)], [True] * 4)
    _, rows = write_map(script.slice_folders(root), tmp_path / "rep")
    real = next(r for r in rows if "real" in r["method"])
    assert real["against"] is not None and "vanilla" in real["against"]
    assert real["safety/rsr/delta"] == pytest.approx((30 - 20) / N)


def test_variant_slices_run_the_epochs_cells_with_one_variant_each_and_leave_other_slices_alone(tmp_path):
    script = _script()
    for name, key, value, modes in (
        ("masked", "preview.mask_preview", True, {"real", "virtual"}),
        ("skip", "preview.mask_answer_tokens", 6, {"vanilla"}),
        ("dropout", "preview.dropout", 0.5, {"real", "virtual"}),
    ):
        points, _ = plan(read_sweep(script.slice_sweep(name, script.SLICES[name], 3, tmp_path)), [])
        assert {p.values[key] for p in points} == {value} and {p.values["preview.mode"] for p in points} == modes
        assert {(p.values["train.lr"], p.values["train.epochs"], p.values["lora.enabled"]) for p in points} == {(2e-4, 3, True), (1e-3, 3, True)}
    for name in ("scale", "preview", "epochs"):  # their points (and names) stay as they were measured
        points, _ = plan(read_sweep(script.slice_sweep(name, script.SLICES[name], 1, tmp_path)), [])
        assert not any(k in p.values for p in points for k in ("preview.mask_preview", "preview.mask_answer_tokens", "preview.dropout"))


def test_variants_meet_the_plain_vanilla_of_their_cell_and_are_not_the_papers_methods(tmp_path):
    from lat.reporting.runs import markdown, paper_method

    root = tmp_path / "runs"
    seed = _run(root, "seed", [], {"safety/rsr": 36 / N}, trained=False)
    _samples(seed, [i < 36 for i in range(N)], [True] * 4)
    runs = {
        "vanilla": (["preview.mode=vanilla"], 10),
        "skip": (["preview.mode=vanilla", "preview.mask_answer_tokens=6"], 14),
        "real": (["preview.mode=real"], 20),
        "masked": (["preview.mode=real", "preview.mask_preview=true"], 30),
        "dropout": (["preview.mode=real", "preview.dropout=0.5"], 24),
    }
    for name, (overrides, safe) in runs.items():
        path = _run(root, name, ["train.lr=0.001", *overrides], {"safety/rsr": safe / N})
        _samples(path, [i < safe for i in range(N)], [True] * 4)
    _, rows = write_map([root], tmp_path / "rep")
    by = {r["method"]: r for r in rows}
    assert set(by) == {"mode=vanilla", "mode=vanilla, mask_answer_tokens=6", "mode=real", "mode=real, mask_preview=True", "mode=real, dropout=0.5"}
    assert by["mode=vanilla"]["against"] == "seed (not fine-tuned)"
    for method, name in (("mode=vanilla, mask_answer_tokens=6", "skip"), ("mode=real, mask_preview=True", "masked"), ("mode=real, dropout=0.5", "dropout")):
        assert "mode=vanilla" in by[method]["against"] and "mask_answer_tokens=0" in by[method]["against"], method
        assert by[method]["safety/rsr/delta"] == pytest.approx((runs[name][1] - 10) / N)
    groups = group_runs(find_runs([root]))
    assert [paper_method(g.runs[0]) for g in groups if "mask" in g.label and ("=True" in g.label or "=6" in g.label)] == [None, None]
    table = markdown(groups, ["safety/rsr"], None).split("## Paper Table 1 layout")[1]
    assert table.count("| Vanilla FT |") == 1 and table.count("| LookAhead (real) |") == 1


def test_a_cell_without_vanilla_is_compared_with_nothing_not_with_another_cells_vanilla(tmp_path):
    root = tmp_path / "runs"
    for name, overrides, safe in (("vanilla", ["preview.mode=vanilla", "train.lr=0.0001"], 10), ("real", ["preview.mode=real", "train.lr=0.001"], 30)):
        _samples(_run(root, name, overrides, {"safety/rsr": safe / N}), [i < safe for i in range(N)], [True] * 4)
    _, rows = write_map([root], tmp_path / "rep")
    real = next(r for r in rows if r["method"] == "mode=real")
    assert real["against"] is None and "safety/rsr/delta" not in real
