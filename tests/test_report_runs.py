"""`lat report`: finding runs, grouping over seeds, mean +- std, Table 1 layout, Pareto front, plots."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from lat.cli import main
from lat.config import load_config, to_yaml
from lat.core.errors import UserError
from lat.reporting.runs import group_runs, pareto_front, varying_keys, write_report
from lat.runs.read import find_runs

SMOKE = ["experiment=smoke"]


def _run(root: Path, name: str, overrides: list[str], metrics: dict, kl: list[float] | None = None, trained: bool = True) -> Path:
    cfg = load_config([*SMOKE, *overrides, f"run.name={name}"])
    path = root / name
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(to_yaml(cfg))
    (path / "metrics.json").write_text(json.dumps({**metrics, **({"global_step": 4} if trained else {})}))
    if kl is not None:
        rows = ["epoch,step,probe,position,count,kl,reverse_kl,dlogp"]
        rows += [f"0,0,harmful,{t},8,0.0,0.0,0.0" for t in range(1, len(kl) + 1)]  # step 0: not the final
        rows += [f"0,4,harmful,{t},8,{v},0.1,-0.1" for t, v in enumerate(kl, 1)]
        (path / "divergence.csv").write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "sweep"
    _run(root, "seed", [], {"safety/rsr": 0.95, "safety/jsr@3": 0.2, "utility/gsm8k_acc": 0.1}, trained=False)
    for seed, (rsr, acc, kl1) in enumerate([(0.8, 0.30, 0.20), (0.6, 0.40, 0.30)]):
        _run(
            root,
            f"van{seed}",
            ["preview.mode=vanilla", "preview.m=4", f"run.seed={seed}"],
            {"safety/rsr": rsr, "safety/jsr@3": 0.1, "utility/gsm8k_acc": acc},
            [kl1, 0.1, 0.05],
        )
    for m in (1, 4):
        for seed in (0, 1):
            _run(
                root,
                f"real{m}-{seed}",
                ["preview.mode=real", f"preview.m={m}", f"run.seed={seed}"],
                {"safety/rsr": 0.9, "safety/jsr@3": 0.15, "utility/gsm8k_acc": 0.2 + 0.01 * m},
                [0.05 * m, 0.02, 0.01],
            )
    _run(
        root,
        "virt0",
        ["preview.mode=virtual", "run.seed=0", "train.keep_checkpoint=false"],
        {"safety/rsr": 0.93, "safety/jsr@3": 0.12, "utility/gsm8k_acc": 0.25},
        [0.1, 0.03, 0.02],
    )
    (root / "unfinished").mkdir()
    (root / "unfinished" / "config.yaml").write_text("{}")  # no metrics.json: skipped
    return root


def test_groups_are_settings_over_seeds_with_mean_and_std(runs):
    found = find_runs([runs])
    assert len(found) == 8
    assert varying_keys(found) == ["preview.m", "preview.mode"]  # m absent under vanilla/virtual, seed ignored
    groups = {g.label: g for g in group_runs(found)}
    assert set(groups) == {"seed (not fine-tuned)", "mode=vanilla", "m=1, mode=real", "m=4, mode=real", "mode=virtual"}
    mean, std, n = groups["mode=vanilla"].stat("safety/rsr")
    assert n == 2 and mean == pytest.approx(0.7) and std == pytest.approx(statistics.stdev([0.8, 0.6]))
    assert groups["mode=virtual"].stat("safety/rsr") == (0.93, None, 1)
    assert groups["mode=vanilla"].mean_curve("harmful") == pytest.approx({1: 0.25, 2: 0.1, 3: 0.05})  # final step only


def test_report_files_table1_and_plots(runs, tmp_path, capsys):
    assert main(["report", str(runs), "--out", str(tmp_path / "rep")]) == 0
    out = tmp_path / "rep"
    md = (out / "report.md").read_text()
    assert "| mode=vanilla | 2 | 70.0 ± 14.1 |" in md
    assert "| Vanilla FT | mode=vanilla | 70.0 ± 14.1 | 10.0 ± 0.0 | – | 35.0 ± 7.1 | 82.88 | 38.79 | 47.83 |" in md
    assert "| SDFT | (not run) |" in md and "| Seed | seed (not fine-tuned) | 95.0 | 20.0 | – | 10.0 | 99.39 | 90.30 | 25.88 |" in md
    rows = json.loads((out / "report.json").read_text())
    assert {r["setting"] for r in rows} >= {"m=1, mode=real", "mode=virtual"}
    for png in ("pareto.png", "kl_by_m.png", "kl_by_prefix.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Paper Table 1 layout" in capsys.readouterr().out


def test_pareto_front():
    assert pareto_front([(1, 5), (2, 4), (1, 4), (3, 1), (2, 4)]) == [0, 1, 3, 4]


def test_no_runs_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(UserError, match="no finished runs"):
        find_runs([tmp_path])
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no such run folder" in capsys.readouterr().err


def _samples(path: Path, safe: list[bool], correct: list[bool]) -> None:
    rows = [{"epoch": 0, "step": 0, "metric": "rsr", "prompt": "stale", "prefix": "", "label": "unsafe"}]  # an earlier evaluation
    rows += [
        {
            "epoch": 0,
            "step": 4,
            "metric": "rsr",
            "prompt": f"p{i}",
            "prefix": "",
            "label": "safe" if s else "unsafe",
            "label_embedding": "unjudged" if i == 0 else ("safe" if s else "unsafe"),
        }
        for i, s in enumerate(safe)
    ]
    rows += [{"epoch": 0, "step": 4, "metric": "utility/gsm8k", "prompt": f"q{i}", "correct": c, "correct_last_number": c} for i, c in enumerate(correct)]
    (path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_report_gives_wilson_intervals_and_marks_significant_differences_from_vanilla(tmp_path):
    root = tmp_path / "runs"
    n = 40
    for seed in (0, 1):
        van = _run(root, f"van{seed}", ["preview.mode=vanilla", f"run.seed={seed}"], {"safety/rsr": 0.5, "utility/gsm8k_acc": 0.5})
        _samples(van, [i < 20 for i in range(n)], [i < 20 for i in range(n)])
        real = _run(root, f"real{seed}", ["preview.mode=real", f"run.seed={seed}"], {"safety/rsr": 0.9, "utility/gsm8k_acc": 0.525})
        _samples(real, [i < 36 for i in range(n)], [i < 21 for i in range(n)])  # +16 safe prompts, +1 correct
    out = write_report([root], tmp_path / "rep")
    rows = {r["setting"]: r for r in json.loads((out / "report.json").read_text())}
    real = next(r for k, r in rows.items() if "real" in k)
    van = next(r for k, r in rows.items() if "vanilla" in k)
    assert (real["safety/rsr/ci_low"], real["safety/rsr/ci_high"]) == pytest.approx((0.8149, 0.9485), abs=1e-4)  # Wilson 72 / 80
    assert real["safety/rsr/delta"] == pytest.approx(0.4) and real["safety/rsr/significant"] is True
    assert real["utility/gsm8k_acc/delta"] == pytest.approx(0.025) and real["utility/gsm8k_acc/significant"] is False
    assert "safety/rsr/delta" not in van
    text = (out / "report.md").read_text()
    assert "## Differences from" in text and "+40.0 [" in text and "] *" in text


def test_report_names_its_judges_and_reads_rejudged_labels(tmp_path):
    root = tmp_path / "runs"
    for name, mode in (("van", "vanilla"), ("virt", "virtual")):
        path = _run(root, name, [f"preview.mode={mode}", "eval.extra_judges=[embedding]"], {"safety/rsr": 0.5, "overrefusal/rate": 0.25})
        rows = [
            {"metric": "rsr", "prompt": f"p{i}", "prefix": "", "response": "r", "label": "safe" if i % 2 else "unsafe", "label_embedding": "safe"}
            for i in range(4)
        ]
        rows += [{"metric": "overrefusal", "prompt": f"b{i}", "prefix": "", "response": "r", "label": "refused" if i == 0 else "answered"} for i in range(4)]
        (path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        rejudged = [{**r, "judge/context": "safe"} for r in rows if r["metric"] == "rsr"]
        (path / "rejudged.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rejudged))
    (run,) = [r for r in find_runs([root]) if r.path.name == "van"]
    assert run.metrics["safety/context/rsr"] == 1.0 and run.outcomes["overrefusal/rate"]["b0\x00"] == 1.0
    md = (write_report([root], tmp_path / "rep") / "report.md").read_text()
    assert "## Judges" in md and "are the `keyword` judge's" in md and "`context`, `embedding`" in md
    assert "| embedding | rsr | 8 | 0.500 |" in md  # the embedding judge agrees with keyword on half the generations
    assert "safety/context/rsr" in md.split("## Rates with 95 % intervals")[1]  # re-judged rates get intervals too
    assert "overrefusal/rate" in md.split("## Rates with 95 % intervals")[1]
    assert "Ours: RSR and JSR@3 (keyword judge), over-refusal" in md


def test_results_table_counts_caption_and_plot_with_intervals(tmp_path):
    from lat.reporting.tables import judge_caption, plot_safety_utility, results_table, to_markdown

    metrics = {"safety/rsr": 0.5, "safety/rsr/n": 10, "safety/rsr/unjudged": 2, "safety/embedding/rsr": 0.4, "overrefusal/rate": 0.2}
    metrics |= {"overrefusal/rate/n": 5, "utility/gsm8k_acc": 0.3, "utility/n": 20}
    a = _run(tmp_path, "a", [], metrics)
    b = _run(tmp_path, "b", [], {**metrics, "safety/rsr": 0.7})
    rows = results_table({"vanilla": a, "virtual": b})
    assert rows[0]["safety/rsr/n"] == 8 and rows[0]["safety/embedding/rsr/n"] == 10 and rows[0]["overrefusal/rate/n"] == 5
    md = to_markdown(rows, judge_caption("context", ["embedding"]))
    assert "/n" not in md.splitlines()[0] and "overrefusal/rate" in md.splitlines()[0]
    assert md.rstrip().endswith("`embedding/...` columns: the `embedding` judge on the same generations. Rates in %.")
    assert plot_safety_utility(rows, tmp_path / "su.png").stat().st_size > 0


def test_counts_of_a_benchmark_rate_and_an_extra_judge_on_it():
    from lat.reporting.tables import judged_count

    metrics = {"safety/rsr/n": 9, "safety/hexphi/rsr/n": 4, "safety/hexphi/rsr/unjudged": 1, "safety/hexphi/embedding/rsr/unjudged": 2}
    assert judged_count(metrics, "safety/hexphi/rsr") == 3
    assert judged_count(metrics, "safety/hexphi/embedding/rsr") == 2
    assert judged_count(metrics, "safety/embedding/rsr") == 9
