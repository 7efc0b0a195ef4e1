"""What the poison costs: clean against poisoned Vanilla FT of ``experiment=defenses`` folders.

    python experiments/defenses/poison_cost.py runs/defenses [runs/defenses_s1 ...]

``lat report`` measures every method against the Vanilla FT of its own poison share; this prints
the one difference it leaves out, the poisoned Vanilla FT (``vanilla``) minus the clean one
(``vanilla_clean``), per rate: pooled over the folders' seeds, paired bootstrap over prompts as in
``lat report`` (points, 95 %; * = the interval excludes 0).
"""

from __future__ import annotations

import sys
from pathlib import Path

from lat.reporting.runs import difference, group_runs
from lat.runs.read import find_runs

RATES = ("safety/rsr", "safety/jsr@3", "overrefusal/rate", "utility/gsm8k_acc")


def main(folders: list[str]) -> None:
    runs = [r for r in find_runs([Path(f) for f in folders]) if r.path.name in ("vanilla", "vanilla_clean")]
    clean, poisoned = sorted(group_runs(runs, ["data.harmful_mix"]), key=lambda g: g.values["data.harmful_mix"])
    print(f"poisoned ({len(poisoned.runs)} runs) - clean ({len(clean.runs)} runs) Vanilla FT, points [95 %]:")
    for rate in RATES:
        d = difference(poisoned, clean, rate)
        if d is not None:
            star = " *" if d.significant else ""
            print(f"  {rate}: {100 * d.delta:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}]{star}")


if __name__ == "__main__":
    main(sys.argv[1:])
