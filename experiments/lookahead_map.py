"""The map: where, if anywhere, do previews help on the embedded default?

Runs slices of lat/configs/sweep/map.yaml with `lat sweep` (each point a `lat train
experiment=quickstart train.start_from=seed eval.max_samples=null eval.precision=null
align.dtype=null align.attn_implementation=null` run: the main job's aligned seed, as built by its
safety SFT on the fp32 base, fine-tuned on synthetic arithmetic, RSR / JSR@3 on all 132 held-out
harmful prompts, generated in fp32 as the map was first measured),
evaluates the seed once under the same settings, then writes the map with `lat report --map`:
each preview against Vanilla FT of the same learning rate / LoRA-or-full / epochs, Vanilla FT
against the seed, paired-bootstrap intervals over prompts.

Slices (each its own sweep folder, so they never share a point):

* ``scale``: learning rate {2e-5, 1e-4, 2e-4, 1e-3} x {LoRA, full} x {vanilla, real m=6, virtual}, 1 epoch;
* ``preview``: at lr 1e-3 with LoRA, real m in {2, 12} and virtual with a per-example pool of P
  (the scale slice holds vanilla, real m=6 and constant P there);
* ``epochs``: 3 epochs at lr {2e-4, 1e-3} with LoRA, vanilla / real m=6 / virtual.

The variants aimed at the previews' failure modes, at the ``epochs`` slice's cells (each
against that slice's Vanilla FT, so run ``epochs`` for the same learning rates too):

* ``masked``: real m=6 and virtual with no loss on the previewed tokens (``preview.mask_preview``);
* ``skip``: vanilla with no loss on the first 6 answer tokens (``preview.mask_answer_tokens=6``),
  the same masking without any preview;
* ``dropout``: real m=6 and virtual with half the examples left unmodified (``preview.dropout=0.5``).

    python experiments/lookahead_map.py --slices scale --seeds 3
    python experiments/lookahead_map.py --slices scale preview epochs --seeds 3   # the whole map

Any axis of a slice can be narrowed (``--lr 1e-3 2e-4``, ``--tuning lora``); everything lands in
runs/lookahead_map/, re-running skips finished points, and the report covers every slice run so far.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

from lat.config import find_config
from lat.config.sweep import read_sweep
from lat.workflows.sweep import fixed_overrides

ROOT = Path(__file__).resolve().parents[1]
SLICES = {
    "scale": {"lr": [2e-5, 1e-4, 2e-4, 1e-3], "tuning": ["lora", "full"], "epochs": [1], "modes": ["vanilla", "real", "virtual"], "m": [6]},
    "preview": {"lr": [1e-3], "tuning": ["lora"], "epochs": [1], "modes": ["real", "virtual_pool"], "m": [2, 12]},
    "epochs": {"lr": [2e-4, 1e-3], "tuning": ["lora"], "epochs": [3], "modes": ["vanilla", "real", "virtual"], "m": [6]},
    "masked": {"lr": [2e-4, 1e-3], "tuning": ["lora"], "epochs": [3], "modes": ["real", "virtual"], "m": [6], "mask_preview": [True]},
    "skip": {"lr": [2e-4, 1e-3], "tuning": ["lora"], "epochs": [3], "modes": ["vanilla"], "m": [6], "mask_answer_tokens": [6]},
    "dropout": {"lr": [2e-4, 1e-3], "tuning": ["lora"], "epochs": [3], "modes": ["real", "virtual"], "m": [6], "dropout": [0.5]},
}
AXES = {
    "lr": "train.lr",
    "tuning": "lora.enabled",
    "epochs": "train.epochs",
    "modes": "preview.mode",
    "m": "preview.m",
    "mask_preview": "preview.mask_preview",
    "mask_answer_tokens": "preview.mask_answer_tokens",
    "dropout": "preview.dropout",
}
"""Slice axis -> setting; the variants' axes are not in map.yaml and are set only by their slices."""


def slice_sweep(name: str, axes: dict, seeds: int, out: Path) -> Path:
    """lat/configs/sweep/map.yaml restricted to one slice's values and the first ``seeds`` seeds."""
    body = yaml.safe_load(find_config("sweep", "map").read_text())
    body["name"] = f"map_{name}"
    for axis, key in AXES.items():
        if axis not in axes:
            continue
        values = axes[axis] if axis != "tuning" else [t == "lora" for t in axes[axis]]
        body["parameters"][key] = {"values": values}
    body["parameters"]["run.seed"] = {"values": list(range(seeds))}
    path = out / f"map_{name}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def slice_folders(root: Path) -> list[Path]:
    """Every slice's sweep folder under ``root`` that exists, whichever slices this call ran: the
    map compares previews with the Vanilla FT of their cell, which may sit in another slice (the
    ``preview`` slice's against ``scale``'s)."""
    return [root / f"map_{name}" for name in SLICES if (root / f"map_{name}").is_dir()]


def lat(*args: str) -> int:
    return subprocess.call([sys.executable, "-m", "lat", *args])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", nargs="+", choices=list(SLICES), default=["scale"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--root", default=str(ROOT / "runs" / "lookahead_map"))
    for axis in ("lr", "epochs", "m"):
        ap.add_argument(f"--{axis}", nargs="+", type=float if axis == "lr" else int, help=f"narrow every slice's {AXES[axis]}")
    ap.add_argument("--tuning", nargs="+", choices=["lora", "full"], help="narrow every slice to LoRA or full fine-tuning")
    ap.add_argument("--modes", nargs="+", help="narrow every slice's preview.mode")
    ap.add_argument("overrides", nargs="*", help="key=value overrides for every run (the seed's evaluation too)")
    args = ap.parse_args()
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    for name in args.slices:
        axes = {axis: [v for v in values if getattr(args, axis, None) is None or v in getattr(args, axis)] for axis, values in SLICES[name].items()}
        if not all(axes.values()):
            print(f"slice {name}: nothing left after narrowing; skipped", file=sys.stderr)
            continue
        code = lat("sweep", str(slice_sweep(name, axes, args.seeds, root)), "--root", str(root), "--workers", str(args.workers), *args.overrides)
        if code not in (0, 1):
            raise SystemExit(code)
    seed = root / "seed"
    if not (seed / "metrics.json").exists():  # the sweep file's command settings, without training
        settings = fixed_overrides(read_sweep(find_config("sweep", "map")))
        code = lat("eval", *settings, f"run.root={root}", "run.name=seed", *args.overrides)
        if code != 0:
            raise SystemExit(code)
    raise SystemExit(lat("report", *map(str, slice_folders(root)), str(seed), "--out", str(root / "report"), "--map"))


if __name__ == "__main__":
    main()
