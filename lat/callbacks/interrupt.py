"""Stop a run on SIGINT / SIGTERM at the next step boundary, with a checkpoint to resume from.

A scheduler's SIGTERM (SLURM, Kubernetes, a spot instance going away) or a Ctrl+C must not lose
the steps trained so far. :class:`GracefulStop` lets the current optimizer step finish, saves
``checkpoints/last.ckpt`` exactly as a periodic checkpoint would be saved at that step (weights,
optimizer, scheduler, loop counters, random states), and ends the run with
:class:`~lat.core.errors.RunStopped`, which the CLI reports in one line (exit code ``128 + signal``).
``run.resume=true`` continues from there. A second Ctrl+C stops at once.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import lightning as L

from lat.core.errors import RunStopped

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulStop(L.Callback):
    """Turn SIGINT / SIGTERM during training into a checkpoint and a clean stop.

    Args:
        ckpt_path: Where the checkpoint goes (the run's ``checkpoints/last.ckpt``).
    """

    def __init__(self, ckpt_path: Path):
        self.ckpt_path = Path(ckpt_path)
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handler(self, signum: int, frame) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: stop now
        self.signum = signum

    def on_train_start(self, trainer: L.Trainer, module) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handler) for s in SIGNALS}

    def _restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)  # type: ignore[arg-type]  # what signal.signal returned: a handler
        self._previous = {}

    def on_train_end(self, trainer: L.Trainer, module) -> None:
        self._restore()

    def on_exception(self, trainer: L.Trainer, module, exception: BaseException) -> None:
        self._restore()

    def on_train_batch_end(self, trainer: L.Trainer, module, outputs, batch, batch_idx: int) -> None:
        if self.signum is None:
            return
        last = trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        if (batch_idx + 1) % trainer.accumulate_grad_batches and not last:
            return  # inside an accumulation window: stop after its optimizer step
        trainer.save_checkpoint(self.ckpt_path)
        name = signal.Signals(self.signum).name
        raise RunStopped(
            f"stopped by {name} after step {trainer.global_step}; checkpoint saved to {self.ckpt_path}; continue with run.resume=true", code=128 + self.signum
        )
