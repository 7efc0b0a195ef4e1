"""Stop a run on SIGINT / SIGTERM / SIGHUP at the next safe point, with a checkpoint to resume from.

A scheduler's SIGTERM (SLURM, Kubernetes, a spot instance going away), a closed terminal's SIGHUP
or a Ctrl+C must not lose the steps trained so far, nor an evaluation. :class:`GracefulStop`
notes the signal and acts at the next point where a checkpoint resumes exactly:

* after an optimizer step (mid-epoch or an epoch's last step): it saves ``checkpoints/last.ckpt``
  as a periodic checkpoint would be saved at that step (weights, optimizer, scheduler, loop
  counters, random states, the callbacks' progress) and ends the run with
  :class:`~lat.core.errors.RunStopped` (one line, exit code ``128 + signal``);
* after the epoch-end work (divergence, evaluations), when the signal came during it: the same,
  from the epoch's end;
* during the final evaluation and save, which the recipe covers with :meth:`GracefulStop.install`
  after ``fit``: the run finishes first, then :meth:`GracefulStop.raise_if_signalled` stops the
  caller (so ``lat run`` does not start its next method).

Under DDP every rank agrees on the signal at each of those points and saves the same checkpoint
(rank 0 writes it). ``run.resume=true`` continues from the checkpoint. A second Ctrl+C stops at once. SIGKILL cannot
be caught; a killed run resumes from its last periodic checkpoint.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import lightning as L
import torch

from lat.core.errors import RunStopped

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class GracefulStop(L.Callback):
    """Turn SIGINT / SIGTERM / SIGHUP into a checkpoint and a clean stop.

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

    def install(self) -> None:
        """Catch the signals from now on (main thread only). What it replaces is what
        :meth:`restore` puts back, so installing again after Lightning's teardown (which put back
        the handlers found before ``fit``) restores those, never Lightning's."""
        if threading.current_thread() is not threading.main_thread():
            return
        for s in SIGNALS:
            if signal.getsignal(s) != self._handler:
                self._previous[s] = signal.signal(s, self._handler)

    def restore(self) -> None:
        """Put back the handlers found by :meth:`install`."""
        for s, handler in self._previous.items():
            signal.signal(s, handler)  # type: ignore[arg-type]  # what signal.signal returned: a handler
        self._previous = {}

    def on_train_start(self, trainer: L.Trainer, module) -> None:
        # Replaces Lightning's own SIGTERM handler, which would end the run with exit code 1 at the
        # epoch's end. Lightning's teardown after fit puts back what it found before fit.
        self.install()

    def on_exception(self, trainer: L.Trainer, module, exception: BaseException) -> None:
        self.restore()

    def on_train_batch_end(self, trainer: L.Trainer, module, outputs, batch, batch_idx: int) -> None:
        last = trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        if (batch_idx + 1) % trainer.accumulate_grad_batches and not last:
            return  # inside an accumulation window: stop after its optimizer step
        if self._pending(trainer):
            self._stop(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, module) -> None:
        if self._pending(trainer):  # came during the epoch-end work, which has now finished
            self._stop(trainer)

    def _pending(self, trainer: L.Trainer) -> bool:
        """Whether to stop here. Under DDP every rank stops at the same step: a signal to any
        rank (a scheduler may signal one process, a terminal all of them at slightly different
        moments) is agreed on with one all-reduce, so no rank saves while another trains on."""
        if trainer.world_size <= 1:
            return self.signum is not None
        local = torch.tensor(float(self.signum or 0), device=trainer.strategy.root_device)  # NCCL reduces GPU tensors only
        agreed = int(trainer.strategy.reduce(local, reduce_op="max"))
        if agreed and self.signum is None:
            self.signum = agreed  # another rank's signal, for the message
        # The decision is the collective's alone: a signal arriving during the all-reduce stays
        # noted and is agreed on at the next point, on every rank alike.
        return bool(agreed)

    def _stop(self, trainer: L.Trainer) -> None:
        assert self.signum is not None
        trainer.save_checkpoint(self.ckpt_path, weights_only=False)
        name = signal.Signals(self.signum).name
        raise RunStopped(
            f"stopped by {name} after step {trainer.global_step}; checkpoint saved to {self.ckpt_path}; continue with run.resume=true", code=128 + self.signum
        )

    def raise_if_signalled(self, run_dir: Path) -> None:
        """After a run that finished with a signal pending: stop the caller.

        Raises:
            RunStopped: A signal came during the final evaluation or save.
        """
        if self.signum is not None:
            name = signal.Signals(self.signum).name
            raise RunStopped(f"stopped by {name}; the run had finished first, its results are in {run_dir}", code=128 + self.signum)
