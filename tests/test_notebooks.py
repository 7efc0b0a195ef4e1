"""The analysis notebooks execute offline on a tiny smoke sweep (run once, shared)."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """LAT_RUNS pointing at a folder where the smoke sweep has run (the notebooks reuse it)."""
    import os

    from lat.workflows.sweep import sweep_runs

    root = tmp_path_factory.mktemp("runs")
    old = os.environ.get("LAT_RUNS")
    os.environ["LAT_RUNS"] = str(root)
    folder = sweep_runs("smoke")
    yield folder
    if old is None:
        os.environ.pop("LAT_RUNS")
    else:
        os.environ["LAT_RUNS"] = old


def test_smoke_sweep_finished_every_point(smoke_runs):
    import json

    state = json.loads((smoke_runs / "sweep.json").read_text())
    assert {p["status"] for p in state["points"]} == {"done", "same"}
    assert sum(p["status"] == "done" for p in state["points"]) == 8  # vanilla and virtual ignore m


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(smoke_runs, path):
    import nbformat
    from nbclient import NotebookClient

    assert len(NOTEBOOKS) == 3
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any(o.output_type == "display_data" and "image/png" in o.get("data", {}) for o in outputs)
