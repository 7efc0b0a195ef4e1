"""Write the benign anchors of a built seed as SFT data for a second, anchors-only phase.

The probe behind "An anchors-only phase after the deep SFT" in experiments/RESULTS.md: a seed's
folder keeps the data its safety SFT trained on (``alignment_data.jsonl``, safety examples first,
``alignment_stats.json`` counting them); the anchors (benign requests -> the base model's own
answers) are the records after the safety ones. Those a refusal phrase opens are left out
(:func:`lat.workflows.seed.kept_anchor`, as ``align.benign_drop_refusals=true``), so the phase never
trains a refusal of a benign request.

    python experiments/deep_seed/anchor_phase.py <seed folder> anchors.jsonl
    lat train experiment=quickstart align=deep train.start_from=seed data.task=instruction \
        data.train_path=anchors.jsonl data.max_train_samples=null train.max_steps=13 \
        train.lr=2e-4 lora.r=16 lora.alpha=32 eval.utility_task=gsm8k 'eval.jsr_k=[3,10]'
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lat.data.records import write_records
from lat.workflows.seed import kept_anchor


def anchors(seed: Path) -> list[dict]:
    """The seed SFT's anchor records that no refusal phrase opens, in their training order."""
    n_safety = json.loads((seed / "alignment_stats.json").read_text())["safety"]
    lines = (seed / "alignment_data.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines[n_safety:]]
    return [r for r in records if kept_anchor(r["output"], drop_refusals=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seed", type=Path, help="a seed folder (lat align): alignment_data.jsonl, alignment_stats.json")
    parser.add_argument("out", type=Path, help="the anchors-only SFT data (jsonl: instruction, output, system)")
    args = parser.parse_args()
    kept = anchors(args.seed)
    write_records(args.out, kept)
    print(f"{len(kept)} anchors -> {args.out}")


if __name__ == "__main__":
    main()
