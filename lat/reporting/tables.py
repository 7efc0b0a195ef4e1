"""Results tables and plots from run folders.

* :func:`results_table` — one row per run: RSR, JSR@k, utility and early-position KL, from each
  run's ``metrics.json`` and ``divergence.csv``.
* :func:`write_tables` — the table as markdown, CSV and JSON (atomic writes).
* :func:`plot_kl` — KL(seed || tuned) per answer position on a probe set, one line per method.
* :func:`plot_safety_utility` — safety (RSR, JSR) against utility, one point per method.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Sequence

from lat.core.fileio import atomic_write, write_json, write_text
from lat.evaluation.judges import JUDGES
from lat.reporting.stats import wilson_interval
from lat.runs.read import final_divergence

HEADLINE = (
    "safety/rsr",
    "safety/jsr@3",
    "safety/keyword/rsr",
    "safety/keyword/jsr@3",
    "safety/embedding/rsr",
    "safety/embedding/jsr@3",
    "overrefusal/rate",
    "overrefusal/keyword/rate",
    "overrefusal/embedding/rate",
    "utility/gsm8k_acc",
    "utility/gsm8k_last_number_acc",
    "utility/rouge1",
)


def results_table(runs: dict[str, Path], probe: str = "harmful", kl_positions: Sequence[int] = (1, 2, 3)) -> list[dict]:
    """One row per run (name -> folder), headline metrics plus KL at the first positions."""
    rows = []
    for name, run in runs.items():
        metrics = json.loads((Path(run) / "metrics.json").read_text()) if (Path(run) / "metrics.json").exists() else {}
        row: dict = {"method": name}
        row.update({k: metrics.get(k) for k in HEADLINE if k in metrics})
        row.update({f"{k}/n": judged_count(metrics, k) for k in HEADLINE if k in metrics and judged_count(metrics, k) is not None})
        kl = final_divergence(run, probe)
        row.update({f"kl/pos_{p:02d}": kl.get(p) for p in kl_positions if kl})
        rows.append(row)
    return rows


def judge_of(key: str) -> str | None:
    """The judge a rate of the default sets belongs to when it names one (``safety/<judge>/...``,
    ``overrefusal/<judge>/...``: an extra or a re-judging judge); None otherwise."""
    parts = key.split("/")
    return parts[1] if len(parts) >= 3 and parts[0] in ("safety", "overrefusal") and parts[1] in JUDGES.names() else None


def judged_count(metrics: dict, key: str) -> int | None:
    """How many outcomes the rate ``key`` is over: its prompts less the unjudged (the primary
    judge's ``/n`` and ``/unjudged``; an extra judge shares the primary's prompts); utility: ``utility/n``."""
    if key.startswith("utility/"):
        return metrics.get("utility/n")
    group, *middle, metric = key.split("/")
    judges = set(JUDGES.names())
    base = "/".join([group, *(m for m in middle if m not in judges), metric])  # the judge's prompts are its set's
    n = metrics.get(f"{key}/n", metrics.get(f"{base}/n"))
    if n is None:
        return None
    return int(n) - int(metrics.get(f"{key}/unjudged", 0) or 0)


def _columns(rows: list[dict], counts: bool = True) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r if counts or not k.endswith("/n")))


def judge_caption(judge: str, extra_judges: Sequence[str] = ()) -> str:
    """The line under a results table that says which judge produced its rates."""
    others = "".join(f"; `{j}/...` columns: the `{j}` judge on the same generations" for j in extra_judges)
    return f"Safe rates and over-refusal: the `{judge}` judge{others}. Rates in %."


def to_markdown(rows: list[dict], caption: str = "") -> str:
    """A markdown table (rates printed as percentages, KL with 4 decimals; the counts behind the
    rates are left to the CSV and JSON), ``caption`` below it."""
    cols = _columns(rows, counts=False)

    def cell(k, v):
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.4f}" if k.startswith("kl/") else f"{100 * v:.1f}"
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(c, r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n" + (f"\n{caption}\n" if caption else "")


def write_tables(rows: list[dict], out_dir: Path, stem: str = "results", caption: str = "") -> dict[str, Path]:
    """Write ``<stem>.md`` (with ``caption``), ``<stem>.csv`` and ``<stem>.json``; return their paths."""
    out_dir = Path(out_dir)
    paths = {"md": out_dir / f"{stem}.md", "csv": out_dir / f"{stem}.csv", "json": out_dir / f"{stem}.json"}
    write_text(paths["md"], to_markdown(rows, caption))
    write_csv(paths["csv"], rows)
    write_json(paths["json"], rows)
    return paths


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows as CSV (columns in first-seen order), written atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_columns(rows))
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def save_png(fig, path: Path) -> Path:
    """Save a matplotlib figure as PNG, atomically."""
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
    return path


def plot_kl(runs: dict[str, Path], path: Path, probe: str = "harmful", max_position: int = 16) -> Path | None:
    """PNG of KL(seed || tuned) per answer position 1..max_position, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {name: final_divergence(run, probe) for name, run in runs.items()}
    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, kl in curves.items():
        xs = [p for p in range(1, max_position + 1) if p in kl]
        ax.plot(xs, [kl[p] for p in xs], marker="o", ms=3, label=name)
    ax.set_xlabel("answer position")
    ax.set_ylabel("KL(seed || tuned)")
    ax.set_title(f"Per-position divergence on '{probe}' probes")
    ax.legend()
    ax.grid(alpha=0.3)
    out = save_png(fig, Path(path))
    plt.close(fig)
    return out


def _interval(row: dict, key: str) -> tuple[float, float] | None:
    n = row.get(f"{key}/n")
    return wilson_interval(row[key] * n, n) if n else None


def _errorbars(points: list[dict], x_key: str, y_key: str) -> tuple[list, list, list, list]:
    """x, y (in %) and their asymmetric 95 % Wilson error bars."""
    xs = [100 * r[x_key] for r in points]
    ys = [100 * r[y_key] for r in points]

    def bars(key: str, values: list[float]) -> list[list[float]]:
        low, high = [], []
        for r, v in zip(points, values):
            ci = _interval(r, key)
            low.append(max(0.0, v - 100 * ci[0]) if ci else 0.0)  # max: rounding at a rate of 0 or 1
            high.append(max(0.0, 100 * ci[1] - v) if ci else 0.0)
        return [low, high]

    return xs, ys, bars(x_key, xs), bars(y_key, ys)


def plot_safety_utility(rows: list[dict], path: Path, utility_key: str = "utility/gsm8k_acc") -> Path | None:
    """PNG of safety against utility, one labelled point per method, 95 % Wilson intervals on
    both axes: RSR and JSR@3 (left), over-refusal (right, when measured)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in rows if r.get(utility_key) is not None and r.get("safety/rsr") is not None]
    if not pts:
        return None
    over = [r for r in pts if r.get("overrefusal/rate") is not None]
    fig, axes = plt.subplots(1, 2 if over else 1, figsize=(10 if over else 5, 4), squeeze=False)
    ax = axes[0][0]
    for key, marker in (("safety/rsr", "o"), ("safety/jsr@3", "^")):
        with_key = [r for r in pts if r.get(key) is not None]
        if with_key:
            xs, ys, xerr, yerr = _errorbars(with_key, utility_key, key)
            ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, fmt=marker, capsize=2, label=key.split("/")[-1].upper())
    for r in pts:
        ax.annotate(r["method"], (100 * r[utility_key], 100 * r["safety/rsr"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(f"{utility_key} (%)")
    ax.set_ylabel("safe rate (%)")
    ax.set_title("Safety vs utility (95 % Wilson intervals)")
    ax.legend()
    ax.grid(alpha=0.3)
    if over:
        right = axes[0][1]
        xs, ys, xerr, yerr = _errorbars(over, utility_key, "overrefusal/rate")
        right.errorbar(xs, ys, xerr=xerr, yerr=yerr, fmt="s", capsize=2, color="tab:red")
        for r, x, y in zip(over, xs, ys):
            right.annotate(r["method"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        right.set_xlabel(f"{utility_key} (%)")
        right.set_ylabel("over-refusal (%, lower is better)")
        right.set_title("Over-refusal vs utility")
        right.grid(alpha=0.3)
    out = save_png(fig, Path(path))
    plt.close(fig)
    return out
