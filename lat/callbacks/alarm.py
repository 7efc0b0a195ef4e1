"""DriftAlarm: warn, and optionally stop training, when early-position KL crosses a threshold.

Shallow safety alignment lives in the first answer tokens, so a run whose KL(seed || tuned) at
positions 1..k on harmful probes climbs past a threshold is losing its refusals before any
safety evaluation would say so. The alarm reads each new measurement of the
:class:`~lat.callbacks.divergence.DivergenceMonitor` (it must come after the monitor in the callback
list), logs ``alarm/early_kl`` and, above ``train.drift_alarm_kl``, prints a one-line warning and
records the step; with ``train.drift_alarm_stop`` it also asks the trainer to stop (every rank,
under DDP).
"""

from __future__ import annotations

import sys

import lightning as L


def early_kl(curve: dict[str, list], positions: int) -> float | None:
    """Mean KL over answer positions 1..``positions`` of a monitor curve (None where unmeasured)."""
    values = [v for v in curve.get("kl", [])[:positions] if v is not None]
    return sum(values) / len(values) if values else None


class DriftAlarm(L.Callback):
    """Watch a probe set's early-position KL after every divergence measurement.

    Args:
        monitor: The run's DivergenceMonitor.
        probe: Probe set to watch (None = the monitor's first).
        positions: k, the answer positions 1..k averaged.
        threshold: Alarm when the mean KL exceeds this.
        stop: Also stop training when the alarm fires.
    """

    def __init__(self, monitor, probe: str | None, positions: int, threshold: float, stop: bool = False):
        self.monitor = monitor
        self.probe = probe or next(iter(monitor.loaders), None)
        self.positions, self.threshold, self.stop = positions, threshold, stop
        self.fired: list[tuple[int, float]] = []
        self._seen: int | None = None

    def check(self, curve: dict[str, list]) -> float | None:
        """The early KL of ``curve`` if it crosses the threshold, else None."""
        value = early_kl(curve, self.positions)
        return value if value is not None and value > self.threshold else None

    def _after_measurement(self, trainer: L.Trainer) -> None:
        step = self.monitor.last_step
        if step is None or step == self._seen or self.probe not in self.monitor.latest:
            return
        self._seen = step
        curve = self.monitor.latest[self.probe]
        value = early_kl(curve, self.positions)
        if value is not None:
            for logger in trainer.loggers:
                logger.log_metrics({"alarm/early_kl": value}, step=step)
        crossed = self.check(curve)
        if crossed is None:
            return
        self.fired.append((step, crossed))
        action = "stopping the run" if self.stop else "training goes on (train.drift_alarm_stop=true stops it)"
        print(
            f"lat: drift alarm at step {step}: mean KL at answer positions 1-{self.positions} on '{self.probe}' "
            f"probes is {crossed:.4f} > {self.threshold:g}; {action}",
            file=sys.stderr,
            flush=True,
        )
        if self.stop:
            trainer.should_stop = True

    def _agree(self, trainer: L.Trainer) -> None:
        """Under DDP only rank 0 measures: its stop goes to every rank (one all-reduce)."""
        if self.stop and trainer.world_size > 1:
            trainer.should_stop = trainer.strategy.reduce_boolean_decision(trainer.should_stop, all=False)

    def on_train_start(self, trainer: L.Trainer, module) -> None:
        self._after_measurement(trainer)  # the monitor's epoch end done at a resumed run's start
        self._agree(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, module, outputs, batch, batch_idx: int) -> None:
        self._after_measurement(trainer)
        self._agree(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, module) -> None:
        self._after_measurement(trainer)
        self._agree(trainer)

    def state_dict(self) -> dict:
        return {"fired": [list(f) for f in self.fired], "seen": self._seen}

    def load_state_dict(self, state_dict: dict) -> None:
        """Alarms fired before the checkpoint (they stay in ``alarm/fired_at_steps``)."""
        self.fired = [(int(s), float(v)) for s, v in state_dict.get("fired", [])]
        self._seen = state_dict.get("seen")
