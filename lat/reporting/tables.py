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
from lat.runs.read import final_divergence

HEADLINE = (
    "safety/rsr",
    "safety/jsr@3",
    "safety/embedding/rsr",
    "safety/embedding/jsr@3",
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
        kl = final_divergence(run, probe)
        row.update({f"kl/pos_{p:02d}": kl.get(p) for p in kl_positions if kl})
        rows.append(row)
    return rows


def _columns(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r))


def to_markdown(rows: list[dict]) -> str:
    """A markdown table; rates printed as percentages, KL with 4 decimals."""
    cols = _columns(rows)

    def cell(k, v):
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.4f}" if k.startswith("kl/") else f"{100 * v:.1f}"
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(c, r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_tables(rows: list[dict], out_dir: Path, stem: str = "results") -> dict[str, Path]:
    """Write ``<stem>.md``, ``<stem>.csv`` and ``<stem>.json``; return their paths."""
    out_dir = Path(out_dir)
    paths = {"md": out_dir / f"{stem}.md", "csv": out_dir / f"{stem}.csv", "json": out_dir / f"{stem}.json"}
    write_text(paths["md"], to_markdown(rows))
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


def plot_safety_utility(rows: list[dict], path: Path, utility_key: str = "utility/gsm8k_acc") -> Path | None:
    """PNG scatter of RSR and JSR@3 (y) against utility (x), one labelled point per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in rows if r.get(utility_key) is not None and r.get("safety/rsr") is not None]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(5, 4))
    for key, marker in (("safety/rsr", "o"), ("safety/jsr@3", "^")):
        xs = [100 * r[utility_key] for r in pts if r.get(key) is not None]
        ys = [100 * r[key] for r in pts if r.get(key) is not None]
        ax.scatter(xs, ys, marker=marker, label=key.split("/")[-1].upper())
    for r in pts:
        ax.annotate(r["method"], (100 * r[utility_key], 100 * r["safety/rsr"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(f"{utility_key} (%)")
    ax.set_ylabel("safe rate (%)")
    ax.set_title("Safety vs utility")
    ax.legend()
    ax.grid(alpha=0.3)
    out = save_png(fig, Path(path))
    plt.close(fig)
    return out
