"""Benchmark: batched evaluation generation vs a one-prompt-at-a-time generate loop.

Embedded SmolLM2-135M-Instruct, greedy, N prompts x T new tokens (defaults 64 x 64): the first
N GSM8K test questions as chat prompts. Both sides run in the same process on the same model;
the outputs must be token-identical.

    python experiments/benchmarks/generation_throughput.py --prompts 64 --new-tokens 64 --batch 32
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lat.config import ModelConfig
from lat.data.tasks import Example
from lat.evaluation.generate import GenerationSettings, generate, prompt_ids
from lat.models.loading import load_model_and_tokenizer

GSM8K = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "gsm8k" / "test.jsonl"


def questions(n: int) -> list[str]:
    if GSM8K.exists():
        return [json.loads(line)["question"] for line in open(GSM8K)][:n]
    from lat.data.records import read_records

    return [r["question"] for r in read_records("pkg:assets/arithmetic_test.jsonl").records][:n]


@torch.no_grad()
def one_at_a_time(model, tok, prompts, new_tokens):
    """The plain loop: model.generate on each prompt alone (no padding)."""
    out = []
    for p in prompts:
        ids = torch.tensor([p])
        seq = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new_tokens,
            do_sample=False,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        out.append(seq[0, len(p) :].tolist())
    return out


def trim(ids, eos):
    return ids[: ids.index(eos) + 1] if eos in ids else ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    model, tok = load_model_and_tokenizer(ModelConfig(name_or_path="embedded"))
    model.eval()
    prompts = [prompt_ids(tok, Example(q, "", "You are a helpful assistant.")) for q in questions(args.prompts)]
    generate(model, tok, prompts[:2], GenerationSettings(max_new_tokens=2, batch_size=2))  # warm-up
    t = time.perf_counter()
    batched = generate(model, tok, prompts, GenerationSettings(max_new_tokens=args.new_tokens, batch_size=args.batch))
    tb = time.perf_counter() - t
    t = time.perf_counter()
    single = one_at_a_time(model, tok, prompts, args.new_tokens)
    ts = time.perf_counter() - t
    same = [g.token_ids for g in batched] == [trim(s, tok.eos_token_id) for s in single]
    n_new = sum(len(g.token_ids) for g in batched)
    print(f"prompts {len(prompts)} x max {args.new_tokens} new tokens ({n_new} generated), batch {args.batch}, threads {torch.get_num_threads()}")
    print(f"one at a time: {ts:.1f} s   batched: {tb:.1f} s   speed-up: {ts / tb:.2f}x   identical greedy outputs: {same}")


if __name__ == "__main__":
    main()
