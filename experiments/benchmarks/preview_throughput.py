"""Benchmark: `lat preview` (batched) vs a naive one-record-at-a-time implementation.

Both apply the same semantics (real mode, m tokens of the same tokenizer, the paper's
connector) to the same file, write jsonl, and must produce identical bytes. Interpreter start-up
and tokenizer loading are excluded; each side is timed ``--repeats`` times and the median is
reported.

    python experiments/benchmarks/preview_throughput.py \
        --input ../shared/datasets/gsm8k/train.jsonl --m 6 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from lat.cli import load_tokenizer
from lat.config import PreviewConfig
from lat.data.preview import preview_records
from lat.data.records import read_records, write_records

CONNECTOR = " The answer begins with: "


def naive(src: Path, dst: Path, m: int, tok) -> None:
    """The plain approach: parse, tokenize and write one record at a time."""
    with open(src, encoding="utf-8") as f, open(dst, "w", encoding="utf-8") as out:
        for line in f:
            if not line.strip():
                continue
            item = json.loads(line)
            head = tok.convert_tokens_to_string(tok.tokenize(item["answer"])[:m])
            item["question"] = item["question"] + CONNECTOR + head
            out.write(json.dumps(item) + "\n")


def batched(src: Path, dst: Path, m: int, tok) -> None:
    """What `lat preview` does after start-up: read, validate, batched preview, atomic write."""
    records = read_records(src)
    records.texts("question")
    records.texts("answer")
    out = preview_records(records.records, "question", "answer", PreviewConfig(mode="real", m=m), tok)
    write_records(dst, out)


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", default="../shared/datasets/gsm8k/train.jsonl")
    ap.add_argument("--m", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tokenizer", default="embedded")
    args = ap.parse_args()
    tok = load_tokenizer(args.tokenizer)
    src = Path(args.input)
    n = sum(1 for line in open(src, encoding="utf-8") if line.strip())
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "naive.jsonl", Path(tmp) / "lat.jsonl"
        naive_t, lat_t = [], []
        for _ in range(args.repeats):  # interleaved so both see the same machine state
            naive_t.append(timed(naive, src, a, args.m, tok))
            lat_t.append(timed(batched, src, b, args.m, tok))
        identical = a.read_bytes() == b.read_bytes()
    tn, tl = statistics.median(naive_t), statistics.median(lat_t)
    print(f"records: {n}  m: {args.m}  tokenizer: {args.tokenizer}  repeats: {args.repeats}  identical output: {identical}")
    print(f"naive one-at-a-time: {tn:.3f} s  ({n / tn:,.0f} records/s)")
    print(f"lat preview batched: {tl:.3f} s  ({n / tl:,.0f} records/s)")
    print(f"speed-up: {tn / tl:.1f}x")
    if not identical:
        raise SystemExit("outputs differ")


if __name__ == "__main__":
    main()
