"""The benchmarks' own logic, without running them (their smoke runs are in test_benchmarks_slow.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def throughput():
    spec = importlib.util.spec_from_file_location("train_throughput", ROOT / "experiments" / "benchmarks" / "train_throughput.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("native", [True, False])
def test_the_cpu_peak_times_bf16_only_where_lat_finds_it_native(throughput, monkeypatch, native):
    timed: list[torch.dtype] = []
    rates = {torch.float32: 100e9, torch.bfloat16: 400e9}
    monkeypatch.setattr(throughput, "native_bf16", lambda accelerator="auto": native)
    monkeypatch.setattr(throughput, "_matmul_rate", lambda dtype, *a, **k: timed.append(dtype) or rates[dtype])
    peak, source = throughput.bf16_peak("cpu")
    assert timed == ([torch.float32, torch.bfloat16] if native else [torch.float32])  # emulated bf16 is never timed
    assert peak == (400e9 if native else 100e9)
    assert ("no native bf16" in source) != native
