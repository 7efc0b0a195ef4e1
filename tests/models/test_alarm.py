"""DriftAlarm: fires on early-position KL above its threshold, not below; can stop a run."""

from __future__ import annotations

import json
import types

import pytest

from lat.callbacks.alarm import DriftAlarm, early_kl
from lat.config import load_config


def _fake(curves_by_step: dict[int, list]):
    monitor = types.SimpleNamespace(loaders={"harmful": None, "task": None}, latest={}, last_step=None)
    trainer = types.SimpleNamespace(loggers=[], should_stop=False, world_size=1)
    return monitor, trainer


def _measure(monitor, step, kl):
    monitor.last_step = step
    monitor.latest["harmful"] = {"kl": kl}


def test_early_kl_averages_the_first_positions_skipping_unmeasured():
    assert early_kl({"kl": [0.1, 0.3, None, 5.0]}, 3) == pytest.approx(0.2)
    assert early_kl({"kl": [None, None]}, 3) is None


def test_alarm_fires_above_threshold_not_below_and_once_per_measurement(capsys):
    monitor, trainer = _fake({})
    alarm = DriftAlarm(monitor, None, positions=3, threshold=0.5, stop=False)
    assert alarm.probe == "harmful"  # the first probe set by default
    _measure(monitor, 10, [0.4, 0.5, 0.6, 9.0])  # mean of 1..3 = 0.5: not above
    alarm.on_train_batch_end(trainer, None, None, None, 0)
    assert alarm.fired == [] and not trainer.should_stop
    _measure(monitor, 20, [0.9, 0.6, 0.3])  # mean 0.6 > 0.5
    alarm.on_train_batch_end(trainer, None, None, None, 0)
    alarm.on_train_epoch_end(trainer, None)  # same measurement seen again: no second alarm
    assert alarm.fired == [(20, pytest.approx(0.6))] and not trainer.should_stop
    assert "drift alarm at step 20" in capsys.readouterr().err


def test_alarm_can_stop_the_run():
    monitor, trainer = _fake({})
    alarm = DriftAlarm(monitor, "harmful", positions=1, threshold=0.1, stop=True)
    _measure(monitor, 4, [0.2])
    alarm.on_train_epoch_end(trainer, None)
    assert trainer.should_stop


def test_lat_train_stops_on_the_alarm_and_records_it(tmp_path):
    from lat.workflows.train import train

    base = ["experiment=smoke", f"run.root={tmp_path}", "train.lr=1e-2", "lora.dropout=0.0", "train.epochs=3", "train.max_steps=6"]
    stopped = train(load_config([*base, "run.name=alarm", "train.drift_alarm_kl=0.0", "train.drift_alarm_stop=true"]))
    assert stopped.metrics["global_step"] == 2  # first measurement after step 0 (every 2 steps) crosses 0
    assert json.loads((stopped.run_dir / "metrics.json").read_text())["alarm/fired_at_steps"] == [2]
    quiet = train(load_config([*base, "run.name=quiet", "train.drift_alarm_kl=1e9"]))
    assert quiet.metrics["global_step"] == 6 and quiet.metrics["alarm/fired_at_steps"] == []
