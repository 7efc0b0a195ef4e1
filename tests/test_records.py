"""The run records kept behind published tables rebuild those tables offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from lat.cli import main

RECORDS = Path(__file__).resolve().parents[1] / "experiments" / "records"


@pytest.mark.parametrize("cell", ["map_full_1e-4", "map_full_2e-4"])
def test_the_map_cell_records_rebuild_the_published_map(cell, tmp_path, capsys):
    kept = RECORDS / cell
    assert main(["report", str(kept / "map_scale"), str(kept / "seed"), "--out", str(tmp_path), "--map"]) == 0
    assert (tmp_path / "map.md").read_text() == (kept / "report" / "map.md").read_text()
