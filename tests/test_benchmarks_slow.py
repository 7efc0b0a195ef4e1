"""Slow: the throughput benchmark's smoke mode runs every configuration end to end (tiny model)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_train_throughput_smoke_runs_every_configuration_and_reports_ratios_and_mfu():
    out = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "benchmarks" / "train_throughput.py"), "--smoke"], capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [ln for ln in out.stdout.splitlines() if ln.startswith("| ") and "%" in ln]
    assert [r.split(" | ")[0][2:] for r in rows] == ["hf", "lat", "lat+monitor", "lat+ref", "lat+pack"]
    assert "lat / hf tokens/s ratio:" in out.stdout and "lat+pack / hf tokens/s ratio:" in out.stdout
    assert "; peak " in out.stdout and "measured matmul" in out.stdout
