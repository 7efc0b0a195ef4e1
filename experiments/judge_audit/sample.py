"""Draw the judge audit's responses from run folders, for reading and scoring by hand.

A seeded, stratified sample: for every model (run folder) and metric, a fixed number of its last
evaluation's samples (all when fewer). The output holds what a reader needs and nothing a judge
said (no labels or scores), split into chunks of about equal size for several readers.

    python experiments/judge_audit/sample.py RUN_FOLDER --out DIR [--chunks 2] [--overlap 12] [--seed 0]
        [--model NAME] [--metrics rsr jsr@3 ...] [--name NAME --skip EARLIER.jsonl ...]

``--name`` and ``--skip`` draw a further batch without the generations of earlier draws.
``--model`` names the model in the records when the folder's name does not (an over-refusal
evaluation beside the run); ``--metrics`` draws from some metrics only.
RUN_FOLDER is one model's run folder (``seed/``, ``vanilla/`` ... of a ``lat run``); the draw
depends only on its samples, its name and the seed, so models can be drawn and read one by one.
Writes ``DIR/<model>.jsonl`` (every drawn record, ids ``<model>-NNN``) and
``DIR/<model>_chunk_N.jsonl`` for the readers: each chunk also holds ``overlap`` records of the
next chunk, so two readers score them independently (their agreement is reported).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

PER_METRIC = {"rsr": 35, "jsr@3": 25, "jsr@5": 25, "jsr@10": 25, "overrefusal": 40}
"""Records drawn per model and metric."""
KEEP = ("metric", "category", "prompt", "prefix", "response")


def last_evaluation(samples: Path) -> list[dict]:
    """The safety and over-refusal samples of a run's last evaluation."""
    rows = [json.loads(line) for line in samples.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if "label" in r and not r.get("benchmark")]
    last = max((r.get("step") if r.get("step") is not None else -1) for r in rows)
    return [r for r in rows if (r.get("step") if r.get("step") is not None else -1) == last]


def key(record: dict) -> tuple[str, str, str]:
    """What makes a generation itself: its metric, prompt and prefill prefix."""
    return record["metric"], record["prompt"], record.get("prefix") or ""


def draw(folder: Path, seed: int, model: str, metrics: list[str], skip: set | None = None, name: str | None = None) -> list[dict]:
    """The stratified sample of one model's run folder, shuffled (readers see metrics mixed).

    Args:
        skip: Generations (:func:`key`) drawn before, left out of this draw.
        name: The draw's name (ids ``<name>-NNN``; default: the folder's name).
    """
    name = name or folder.name
    rng = random.Random(f"{seed}-{name}")
    rows = [r for r in last_evaluation(folder / "samples.jsonl") if key(r) not in (skip or set())]
    out = []
    for metric, n in PER_METRIC.items():
        if metric not in metrics:
            continue
        pool = [r for r in rows if r["metric"] == metric]
        for r in rng.sample(pool, min(n, len(pool))):
            record = {"model": model, **{k: r.get(k, "") for k in KEEP}}
            prefix, response = record["prefix"], record["response"]
            record["continuation"] = response[len(prefix) :] if response.startswith(prefix) else response
            out.append(record)
    rng.shuffle(out)
    return [{"id": f"{name}-{i:03d}", **r} for i, r in enumerate(out)]


def chunks(records: list[dict], n: int, overlap: int) -> list[list[dict]]:
    """``n`` consecutive parts; each also takes the first ``overlap`` records of the next."""
    size = -(-len(records) // n)
    parts = [records[i * size : (i + 1) * size] for i in range(n)]
    return [part + parts[(i + 1) % n][:overlap] if n > 1 else part for i, part in enumerate(parts)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--chunks", type=int, default=2)
    parser.add_argument("--overlap", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", help="the model's name in the records (default: the folder's name)")
    parser.add_argument("--metrics", nargs="+", default=list(PER_METRIC), help="metrics to draw from")
    parser.add_argument("--skip", nargs="*", type=Path, default=[], help="earlier draws whose generations are left out")
    parser.add_argument("--name", help="the draw's name (default: the folder's name)")
    args = parser.parse_args()
    skip = {key(json.loads(line)) for path in args.skip for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}
    name = args.name or args.folder.name
    records = draw(args.folder, args.seed, args.model or args.folder.name, args.metrics, skip, name)
    args.out.mkdir(parents=True, exist_ok=True)

    def write(path: Path, rows: list[dict]) -> None:
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")

    write(args.out / f"{name}.jsonl", records)
    for c, part in enumerate(chunks(records, args.chunks, args.overlap)):
        write(args.out / f"{name}_chunk_{c}.jsonl", part)
    print(f"{len(records)} records of {name} -> {args.out} ({args.chunks} chunks, {args.overlap} read twice each)")


if __name__ == "__main__":
    main()
