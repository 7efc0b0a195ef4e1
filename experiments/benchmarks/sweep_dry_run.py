"""Benchmark: checking a sweep's points (what `lat sweep --dry-run` does before it prints).

``lat`` resolves a point made of plain settings as the base config with those settings replaced
(each distinct value parsed once, :func:`lat.workflows.sweep.point_resolver`); the plain
approach composes every point's config from its files and overrides (``load_config`` per
point) and compares whole configs. Both are timed on the same grid, and must agree on every
point's config and on which points are duplicates; then lat alone checks the full grid.

    python experiments/benchmarks/sweep_dry_run.py --compare 500
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from lat.config import load_config
from lat.config.sweep import expand, overrides, read_sweep
from lat.workflows.check import check_config
from lat.workflows.sweep import effective_config, plan, point_resolver

BASE = ["experiment=smoke"]
GRID = """\
name: bench
method: grid
command: [lat, train, experiment=smoke, "${args_no_hyphens}"]
parameters:
  train.lr: {values: [1.0e-4, 2.0e-4, 3.0e-4, 4.0e-4, 5.0e-4, 6.0e-4, 7.0e-4, 8.0e-4, 9.0e-4, 1.0e-3]}
  preview.m: {values: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}
  run.seed: {values: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}
  data.batch_size: {values: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}
"""
"""A 10,000-point grid (learning rate x preview length x seed x batch size)."""


def plain(points: list[dict]) -> list[str]:
    """The plain approach: compose and check every point's whole config."""
    return [effective_config(check_config(load_config(BASE + overrides(values)))) for values in points]


def with_lat(points: list[dict]) -> list[str]:
    resolve = point_resolver(BASE, load_config(BASE))
    return [effective_config(check_config(resolve(values))) for values in points]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--compare", type=int, default=500, help="points timed both ways")
    args = ap.parse_args()
    check_config(load_config(BASE))  # imports (torch, via the loss registry) outside the timings
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(GRID)
        sweep = read_sweep(path)
        points = expand(sweep)[: args.compare]
        start = time.perf_counter()
        slow = plain(points)
        t_plain = time.perf_counter() - start
        start = time.perf_counter()
        fast = with_lat(points)
        t_lat = time.perf_counter() - start
        assert slow == fast, "the two resolutions disagree"
        print(
            f"{len(points)} points: plain {t_plain:.2f} s ({1e3 * t_plain / len(points):.1f} ms/point), lat {t_lat:.2f} s ({1e3 * t_lat / len(points):.2f} ms/point), ratio {t_plain / t_lat:.1f}x"
        )
        start = time.perf_counter()
        found, _ = plan(sweep, [])
        t_full = time.perf_counter() - start
        print(f"{len(found)} points checked by plan(), as lat sweep --dry-run does: {t_full:.1f} s ({1e3 * t_full / len(found):.2f} ms/point)")


if __name__ == "__main__":
    main()
