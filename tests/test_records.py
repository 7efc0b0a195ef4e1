"""The run records kept behind published tables rebuild those tables offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lat.cli import main
from lat.config import load_config
from lat.workflows.judge import judge_files

RECORDS = Path(__file__).resolve().parents[1] / "experiments" / "records"


@pytest.mark.parametrize("cell", ["map_full_1e-4", "map_full_2e-4"])
def test_the_map_cell_records_rebuild_the_published_map(cell, tmp_path, capsys):
    kept = RECORDS / cell
    assert main(["report", str(kept / "map_scale"), str(kept / "seed"), "--out", str(tmp_path), "--map"]) == 0
    assert (tmp_path / "map.md").read_text() == (kept / "report" / "map.md").read_text()


def _row(text: str, label: str) -> list[str]:
    """The cells after ``label`` of the markdown table row that ``label`` opens."""
    line = next(ln for ln in text.splitlines() if ln.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip().strip("|").split("|")][1:]


def _results(after: str = "") -> str:
    """experiments/RESULTS.md from the first ``after`` on (the whole file when empty)."""
    text = (RECORDS.parents[0] / "RESULTS.md").read_text(encoding="utf-8")
    return text.split(after, 1)[1] if after else text


def _percents(m: dict, keys: list[str]) -> list[str]:
    """The rates ``keys`` of a metrics.json as the tables print them ("–" where absent)."""
    return [f"{100 * m[k]:.1f}" if k in m else "–" for k in keys]


def test_the_wide_anchor_deep_seed_row_is_its_records_metrics():
    m = json.loads((RECORDS / "deep_seed_fp32_wide" / "eval_full" / "metrics.json").read_text())
    cells = _row(_results(), "recipe 9 (836 of 863 anchors)")
    keys = ["safety/rsr", "safety/jsr@3", "safety/jsr@5", "safety/jsr@10", "overrefusal/rate", "utility/gsm8k_last_number_acc"]
    assert cells[0] == "context (default)"
    assert cells[1:] == [f"{100 * m[k]:.1f}" for k in keys]
    assert m["safety/rsr/n"] == 132 and m["overrefusal/rate/n"] == 288


def test_the_amd_quickstart_records_rejudged_offline_give_its_keyword_columns(tmp_path):
    kept = RECORDS / "quickstart_amd_fp32"
    table, cfg = (kept / "results.md").read_text(encoding="utf-8"), load_config(["experiment=smoke"])
    for method in ("seed", "vanilla", "real", "virtual"):
        judge_files([kept / method / "samples.jsonl"], tmp_path / f"{method}.jsonl", cfg, ["keyword"])
        rows = [json.loads(line) for line in (tmp_path / f"{method}.jsonl").read_text().splitlines()]
        for metric, cell in (("rsr", 2), ("jsr@3", 3)):  # the safety/keyword/... columns
            labels = [r["judge/keyword"] for r in rows if r.get("metric") == metric]
            assert len(labels) == 44
            assert _row(table, method)[cell] == f"{100 * labels.count('safe') / len(labels):.1f}"


def test_the_amd_quickstart_differs_from_the_xeons_by_the_prompts_its_benchmark_note_says():
    """experiments/benchmarks/RESULTS.md: at most 3 prompts of 44 on any judge's rate, at most 1
    on the default judge's, at most 1 problem of 32 on accuracy."""
    amd, xeon = ({r["method"]: r for r in json.loads((RECORDS / name / "results.json").read_text())} for name in ("quickstart_amd_fp32", "quickstart"))
    worst: dict[str, int] = {}
    for method, row in amd.items():
        for key, value in row.items():
            if f"{key}/n" not in row:  # a rate: its count of prompts or problems is beside it
                continue
            kind = "utility" if key.startswith("utility") else ("default" if key.count("/") == 1 else "other")
            worst[kind] = max(worst.get(kind, 0), round(abs(value - xeon[method][key]) * row[f"{key}/n"]))
    assert worst == {"default": 1, "other": 3, "utility": 1}


@pytest.mark.parametrize(
    ("label", "run"),
    [
        ("deep seed (`align=deep`, built here)", "seed_eval"),
        ("+ 13 anchor steps (a quarter epoch)", "anchor_phase_13_steps"),
        ("+ 52 anchor steps (one epoch)", "anchor_phase_52_steps"),
        ("+ 13 anchor steps, whole set", "anchor_phase_13_steps_eval_full"),
    ],
)
def test_the_anchor_phase_rows_are_their_records_metrics(label, run):
    m = json.loads((RECORDS / "deep_seed_anchor_phase" / run / "metrics.json").read_text())
    keys = ["safety/rsr", "safety/jsr@3", "safety/jsr@5", "safety/jsr@10", "overrefusal/rate", "safety/keyword/rsr", "utility/gsm8k_last_number_acc"]
    cells = _row(_results(), label)
    assert cells[0] == f"{m['safety/rsr/n']} / {m['overrefusal/rate/n']}"
    assert cells[1:] == _percents(m, keys)


@pytest.mark.parametrize("method", ["seed", "vanilla", "real", "virtual"])
def test_the_deep_seed_paper_small_rows_are_their_records_metrics(method):
    m = json.loads((RECORDS / "paper_small_deep" / method / "metrics.json").read_text())
    label = {"seed": "deep seed", "real": "real (m=6)"}.get(method, method)
    keys = [
        "safety/rsr",
        "safety/jsr@3",
        "safety/jsr@5",
        "safety/jsr@10",
        "overrefusal/rate",
        "utility/gsm8k_acc",
        "safety/keyword/rsr",
        "safety/keyword/jsr@3",
    ]
    cells = _row(_results("**paper_small on the deep seed**"), label)
    assert cells[: len(keys)] == [f"{100 * m[k]:.1f}" for k in keys]
    assert m["safety/rsr/n"] == 132 and m["overrefusal/rate/n"] == 288 and m["utility/n"] == 100


@pytest.mark.parametrize("method", ["seed", "vanilla", "real", "virtual"])
def test_the_deep_seed_quickstart_rows_are_their_records_metrics(method):
    m = json.loads((RECORDS / "quickstart_deep_fp32" / method / "metrics.json").read_text())
    keys = ["safety/rsr", "safety/jsr@3", "safety/jsr@10", "overrefusal/rate", "utility/gsm8k_acc"]
    cells = _row(_results("**The quickstart on today's `align=deep`**"), {"real": "real (m=6)"}.get(method, method))
    assert cells[: len(keys)] == [f"{100 * m[k]:.1f}" for k in keys]
    assert m["safety/rsr/n"] == 44 and m["overrefusal/rate/n"] == 44
