"""Library noise kept off the terminal, so that lat's own lines are what a user reads (and a
user error's ``lat:`` line is all of stderr).

Dropped by the CLI: FutureWarning, DeprecationWarning and PendingDeprecationWarning (about
libraries' APIs: they speak to lat's developers, and the test suite still shows them), and the
info lines Lightning prints on every start (accelerators found, tips, "Trainer.fit stopped").
Every other warning passes; a resumed run says itself where it resumes from.
"""

from __future__ import annotations

import logging
import warnings

LIBRARY_WARNINGS = (FutureWarning, DeprecationWarning, PendingDeprecationWarning)
LIGHTNING_ADVICE = (
    r"The number of training batches \(\d+\) is smaller than the logging interval",
    r"The '\w+' does not have many workers",
)
"""Lightning's advice on settings lat chooses for the user (log interval, loader workers)."""
LIGHTNING_INFO = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


def quiet_libraries() -> None:
    """Drop library deprecation warnings and Lightning's start-up info lines (process-wide)."""
    for category in LIBRARY_WARNINGS:
        warnings.filterwarnings("ignore", category=category)
    for message in LIGHTNING_ADVICE:
        warnings.filterwarnings("ignore", message=message)
    for name in LIGHTNING_INFO:
        logging.getLogger(name).setLevel(logging.WARNING)
