"""The map: where do previews help? Differences from Vanilla FT per training setting.

Runs are grouped as in ``lat report`` (settings over seeds). A *cell* is a group's settings
outside the preview (learning rate, LoRA or full fine-tuning, epochs, ...); a *method* is its
preview settings. Each method is compared with the Vanilla FT group of its own cell, and Vanilla
FT with the seed (the not fine-tuned group), so the map shows both how much fine-tuning at that
scale costs and how much of it a preview wins back. Differences are paired bootstraps over the
prompts both evaluated (a prompt's outcome is its mean over seeds).

Outputs: ``map.md``, ``map.json`` / ``map.csv`` (one row per cell and method), ``map_deltas.png``
(differences against the learning rate, one line per method and cell) and ``map_kl.png``
(per-position KL per cell, one line per method).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from lat.config import PreviewConfig
from lat.core.fileio import write_json, write_text
from lat.reporting.runs import Group, baseline_group, cell, difference, group_runs, paper_method, short_key, show_value
from lat.reporting.tables import save_png, write_csv
from lat.runs.read import find_runs

MAP_METRICS = ("safety/rsr", "safety/jsr@3", "overrefusal/rate", "utility/gsm8k_acc")
"""The rates the map compares (the runs' own judge for safety and over-refusal); those no run
measured are left out of its files."""
MAP_KL = ("kl/pos_01", "kl/pos_02", "kl/pos_03")
X_KEY = "train.lr"
"""The scale of update on the map's x axis (when it varies)."""


def describe(values: dict) -> str:
    """``{"train.lr": 1e-4, "lora.enabled": False}`` -> ``"train.lr=0.0001, lora.enabled=False"``."""
    return ", ".join(f"{short_key(k)}={show_value(v)}" for k, v in values.items()) or "-"


def method_of(group: Group) -> str:
    """The group's varying preview settings as a label (``"mode=real, m=2"``), leaving out those at
    their default (``mask_preview=False``, ``dropout=0.0``, ``m=6``) but the mode; its preview mode
    when no preview setting varies."""
    defaults = {f"preview.{k}": v for k, v in vars(PreviewConfig()).items()}
    preview = {
        k: v
        for k, v in sorted(group.values.items(), key=lambda kv: kv[0] != "preview.mode")  # the mode first
        if k.startswith("preview.") and (k == "preview.mode" or v != defaults.get(k, object()))
    }
    return describe(preview) if preview else str(group.runs[0].config.get("preview.mode", "vanilla"))


def comparison(group: Group, groups: Sequence[Group]) -> Group | None:
    """What ``group`` is measured against: its cell's Vanilla FT (None when the cell has none: never
    another cell's); Vanilla FT against the seed."""
    base = baseline_group(groups, group)
    if base is group:
        return next((g for g in groups if not g.trained), None)
    return base if base is not None and cell(base) == cell(group) else None


def map_rows(groups: Sequence[Group], metrics: Sequence[str] = MAP_METRICS) -> list[dict]:
    """One row per fine-tuned group: cell, method, seeds, each metric's mean and its difference
    from the comparison group (``<m>/delta``, ``/low``, ``/high``, ``/significant``), mean KL.

    Rates are fractions; differences are in the same unit (0.05 = 5 points).
    """
    rows = []
    for g in groups:
        if not g.trained:
            continue
        base, values = comparison(g, groups), cell(g)
        row = {"cell": describe(values), "method": method_of(g), "runs": len(g.runs), "against": base.label if base is not None else None, **values}
        for m in (*metrics, *MAP_KL):
            row[m] = g.stat(m)[0]
        for m in metrics:
            d = difference(g, base, m) if base is not None else None
            if d is not None:
                row.update({f"{m}/delta": d.delta, f"{m}/low": d.low, f"{m}/high": d.high, f"{m}/significant": d.significant})
        rows.append(row)
    return rows


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def _delta(row: dict, m: str) -> str:
    if f"{m}/delta" not in row:
        return "–"
    text = f"{100 * row[f'{m}/delta']:+.1f} [{100 * row[f'{m}/low']:+.1f}, {100 * row[f'{m}/high']:+.1f}]"
    return text + (" *" if row[f"{m}/significant"] else "")


def map_markdown(rows: Sequence[dict], metrics: Sequence[str] = MAP_METRICS) -> str:
    """The map as a markdown table: rates (%), differences (points, 95 % interval, * = excludes 0)."""
    head = ["cell", "method", "runs", *(x for m in metrics for x in (m, f"Δ {m}")), "KL pos 1"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        kl = "–" if r.get("kl/pos_01") is None else f"{r['kl/pos_01']:.4f}"
        cells = [r["cell"], r["method"], str(r["runs"]), *(x for m in metrics for x in (_pct(r.get(m)), _delta(r, m))), kl]
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        "Δ: percentage points against the Vanilla FT run of the same cell (Vanilla FT: against the "
        "seed), paired bootstrap over prompts, 95 % interval; * = the interval excludes 0."
    )
    return "\n".join(lines) + "\n\n" + note + "\n"


def _series(rows: Sequence[dict]) -> dict[str, list[dict]]:
    """Rows by line of the delta plot: method plus the cell without the x key."""
    out: dict[str, list[dict]] = {}
    for r in rows:
        rest = {k: v for k, v in r.items() if "." in k and "/" not in k and k != X_KEY}
        out.setdefault(f"{r['method']} | {describe(rest)}", []).append(r)
    return out


def plot_deltas(rows: Sequence[dict], path: Path, metrics: Sequence[str] = MAP_METRICS) -> Path | None:
    """Differences (points, 95 % interval bars) against the learning rate (log axis), one panel per
    metric, one line per method and cell; without a learning-rate axis, one tick per cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if any(f"{m}/delta" in r for m in metrics)]
    if not rows:
        return None
    by_lr = all(isinstance(r.get(X_KEY), (int, float)) for r in rows) and len({r.get(X_KEY) for r in rows}) > 1
    cells = sorted({r["cell"] for r in rows})
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4.2), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        for name, series in sorted(_series(rows).items()):
            pts = sorted(((r[X_KEY] if by_lr else cells.index(r["cell"]), r) for r in series if f"{m}/delta" in r), key=lambda p: p[0])
            if not pts:
                continue
            xs = [x for x, _ in pts]
            ys = [100 * r[f"{m}/delta"] for _, r in pts]
            err = [[100 * (r[f"{m}/delta"] - r[f"{m}/low"]) for _, r in pts], [100 * (r[f"{m}/high"] - r[f"{m}/delta"]) for _, r in pts]]
            ax.errorbar(xs, ys, yerr=err, marker="o", ms=4, capsize=2, label=name, ls="--" if name.startswith("vanilla") else "-")
        ax.axhline(0, color="k", lw=0.8)
        if by_lr:
            ax.set_xscale("log")
            ax.set_xlabel("learning rate")
        else:
            ax.set_xticks(range(len(cells)), cells, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(f"Δ {m} (points)")
        ax.set_title(f"Δ {m} vs Vanilla FT (vanilla: vs seed)", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    out = save_png(fig, path)
    plt.close(fig)
    return out


def plot_kl(groups: Sequence[Group], path: Path) -> Path | None:
    """Mean per-position KL(seed || tuned) on the first probe set: one panel per cell, one line
    per method (vanilla dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trained = [g for g in groups if g.trained and any(r.kl for r in g.runs)]
    if not trained:
        return None
    probe = next(p for g in trained for r in g.runs for p in r.kl)
    cells: dict[str, list[Group]] = {}
    for g in trained:
        cells.setdefault(describe(cell(g)), []).append(g)
    cols = min(4, len(cells))
    nrows = math.ceil(len(cells) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows), squeeze=False, sharey=True)
    for ax, (name, family) in zip(axes.flat, sorted(cells.items())):
        for g in family:
            curve = g.mean_curve(probe)
            vanilla = paper_method(g.runs[0]) == "Vanilla FT"
            ax.plot(list(curve), list(curve.values()), "k--" if vanilla else "-", marker="o", ms=2.5, lw=1.2, label=method_of(g))
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("answer position")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(cells) :]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"KL(seed || tuned), {probe}")
    fig.tight_layout()
    out = save_png(fig, path)
    plt.close(fig)
    return out


def write_map(paths: Sequence[Path], out: Path, keys: Sequence[str] | None = None) -> tuple[Path, list[dict]]:
    """Aggregate the runs under ``paths`` into the map's files in ``out``; returns (out, rows)."""
    groups = group_runs(find_runs(paths), keys)
    metrics = [m for m in MAP_METRICS if any(g.stat(m)[2] for g in groups if g.trained)]
    rows = map_rows(groups, metrics)
    write_text(out / "map.md", "# Where do previews help?\n\n" + map_markdown(rows, metrics))
    write_json(out / "map.json", rows)
    write_csv(out / "map.csv", rows)
    plot_deltas(rows, out / "map_deltas.png", metrics)
    plot_kl(groups, out / "map_kl.png")
    return out, rows
