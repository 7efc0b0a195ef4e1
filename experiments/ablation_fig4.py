"""Ablation: the shapes of the paper's Fig. 4 (effect of the preview length m; effect of the prefix P)
on the embedded default (the main job's aligned seed, fine-tuned on synthetic arithmetic).

Runs two local sweeps with `lat sweep` (lat/configs/sweep/preview_length.yaml and prefix_type.yaml,
restricted to --seeds seeds; each point is a `lat train experiment=quickstart train.start_from=seed`
run, with fp32 generation and the seed built on the fp32 base, as the sweep files pin), then `lat report` on each, and prints the two series:

* effect of m: RSR, JSR@3, utility and KL at positions 1-3 for vanilla and real m in {1, ..., 16};
* effect of P: the same for vanilla, real (m=6) and virtual with each of the paper's three prefixes.

    python experiments/ablation_fig4.py --seeds 1 --workers 1

Everything lands in runs/ablation_fig4/ (re-running skips finished points).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

from lat.config import find_config

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = {"m": "preview_length", "P": "prefix_type"}
COLUMNS = ("safety/rsr", "safety/jsr@3", "utility/gsm8k_acc", "utility/gsm8k_last_number_acc", "kl/pos_01", "kl/pos_02", "kl/pos_03")


def restricted_sweep(name: str, seeds: int, out: Path, modes: list[str] | None = None) -> Path:
    """A copy of lat/configs/sweep/<name>.yaml with run.seed limited to the first ``seeds`` seeds
    (and preview.mode to ``modes``)."""
    body = yaml.safe_load(find_config("sweep", name).read_text())
    body["parameters"]["run.seed"] = {"values": list(range(seeds))}
    if modes:
        body["parameters"]["preview.mode"] = {"values": modes}
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def lat(*args: str) -> int:
    return subprocess.call([sys.executable, "-m", "lat", *args])


def series(report_json: Path) -> list[dict]:
    import json

    return json.loads(report_json.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--root", default=str(ROOT / "runs" / "ablation_fig4"))
    ap.add_argument("overrides", nargs="*", help="key=value overrides for every run")
    args = ap.parse_args()
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    # The prefix sweep runs only virtual: its vanilla and real (m=6) points are the m sweep's.
    plan = {
        "m": (SWEEPS["m"], None, [root / SWEEPS["m"]], lambda row: True),
        "P": (
            SWEEPS["P"],
            ["virtual"],
            [root / SWEEPS["m"], root / SWEEPS["P"]],
            lambda row: row["paper_method"] != "LookAhead (real)" or row["setting"].startswith("m=6,"),
        ),
    }
    for label, (name, modes, folders, keep) in plan.items():
        sweep = restricted_sweep(name, args.seeds, root, modes)
        code = lat("sweep", str(sweep), "--root", str(root), "--workers", str(args.workers), *args.overrides)
        if code not in (0, 1):
            raise SystemExit(code)
        lat("report", *map(str, folders), "--out", str(root / f"report_{name}"))
        print(f"\n### Effect of {label} ({args.seeds} seed(s); mean over seeds)\n")
        print("| setting | runs | " + " | ".join(COLUMNS) + " |")
        print("|---|---|" + "---|" * len(COLUMNS))
        for row in filter(keep, series(root / f"report_{name}" / "report.json")):
            cells = []
            for c in COLUMNS:
                v = row.get(c)
                cells.append("–" if v is None else (f"{v:.4f}" if c.startswith("kl/") else f"{100 * v:.1f}"))
            print(f"| {row['setting']} | {row['runs']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
