"""A workflow's promise: evaluating a trained run's adapter with ``lat eval`` gives the metrics the
end-of-training evaluation recorded (greedy decoding, same settings)."""

from __future__ import annotations

import json

from lat.cli import main


def test_lat_eval_of_the_adapter_reproduces_the_end_of_training_evaluation(tmp_path, capsys):
    common = ["experiment=smoke", f"run.root={tmp_path}"]
    assert main(["train", *common, "run.name=trained"]) == 0
    trained = json.loads((tmp_path / "trained" / "metrics.json").read_text())
    final = {k: v for k, v in trained.items() if k.startswith(("safety/", "utility/"))}
    assert any(k.startswith("safety/") for k in final) and any(k.startswith("utility/") for k in final)
    assert main(["eval", *common, "run.name=evaluated", f"model.adapter_path={tmp_path / 'trained' / 'adapter'}"]) == 0
    evaluated = json.loads((tmp_path / "evaluated" / "metrics.json").read_text())
    assert {k: evaluated.get(k) for k in final} == final
