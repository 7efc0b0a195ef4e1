"""Benchmark: lat's greedy loop vs ``model.generate`` on the quickstart's evaluation prompts.

The quickstart's four generation sets (44 harmful prompts for RSR, the same with a 3-token
harmful prefill for JSR@3, 44 over-refusal prompts, all with 32 new tokens; 32 arithmetic test
problems with 80), one batch each as the quickstart runs them, with the embedded
SmolLM2-135M-Instruct and, with ``--lora``, the same model with a LoRA adapter (r = 8 on every
linear layer, B drawn at random so the adapter changes the outputs) unmerged, as a fine-tuned
method is evaluated. Both decoders (``model.generate`` and lat's loop) run in one process on one model, alternating, ``--repeats``
times; the median wall time is reported and the new tokens of the two must be identical.
``--merged`` (implies ``--lora``) instead times lat's loop on the adapter unmerged against the same loop
with the adapter merged into the base weights (``eval.merge_lora``, the default since it was
measured), alternating, and counts the rows whose tokens differ (a merged product rounds
differently, so a near tie may flip).

    python experiments/benchmarks/greedy_decoding.py --repeats 3 --lora
    python experiments/benchmarks/greedy_decoding.py --repeats 3 --lora --merged --model ~/.cache/lat/seeds/<key>
    python experiments/benchmarks/greedy_decoding.py --repeats 3 --model ~/.cache/lat/seeds/<key>   # a seed that refuses
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lat.config import ModelConfig
from lat.data.chat import pad_token_id
from lat.data.records import read_records
from lat.data.tasks import Example
from lat.evaluation import generate as gen
from lat.models.loading import load_model_and_tokenizer
from lat.models.merging import merged_lora


def prompt_sets(tok) -> dict[str, tuple[list[list[int]], int]]:
    """The quickstart's four generation sets: name -> (prompt ids, max new tokens)."""
    harmful = read_records("pkg:assets/harmful_eval.jsonl").records[:44]
    benign = read_records("pkg:assets/overrefusal_prompts.jsonl").records[:44]
    problems = read_records("pkg:assets/arithmetic_test.jsonl").records[:32]
    rsr = [gen.prompt_ids(tok, Example(r["prompt"], "")) for r in harmful]
    jsr = [gen.prompt_ids(tok, Example(r["prompt"], ""), gen.prefix_ids(tok, r["response"], 3)) for r in harmful]
    over = [gen.prompt_ids(tok, Example(r["prompt"], "")) for r in benign]
    util = [gen.prompt_ids(tok, Example(r["question"], "")) for r in problems]
    return {"rsr": (rsr, 32), "jsr@3": (jsr, 32), "overrefusal": (over, 32), "utility": (util, 80)}


def with_lora(model):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)  # before the adapter's A is drawn, so both of its factors are seeded
    peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", lora_dropout=0.0))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.02)
    return peft.eval()


@torch.no_grad()
def timed(model, tok, sets, decode) -> tuple[float, dict[str, list[list[int]]]]:
    """Wall time of decoding every set in one batch with ``decode`` (``_library`` or ``_greedy``,
    the two decoders :func:`lat.evaluation.generate.generate` chooses between), and the new tokens
    up to each row's stop token."""
    pad, stops = pad_token_id(tok), gen.stop_ids(model, tok)
    start, out = time.perf_counter(), {}
    for name, (prompts, new) in sets.items():
        rows = decode(model, [list(p) for p in prompts], pad, stops, gen.GenerationSettings(max_new_tokens=new), torch.device("cpu"))
        out[name] = [gen._trim(r, set(stops))[0] for r in rows]
    return time.perf_counter() - start, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lora", action="store_true", help="also time the model with an unmerged LoRA adapter")
    ap.add_argument("--merged", action="store_true", help="only lat's loop on the LoRA model, its adapter unmerged vs merged")
    ap.add_argument("--model", default="embedded", help="model.name_or_path (default: the embedded model)")
    args = ap.parse_args()
    base, tok = load_model_and_tokenizer(ModelConfig(name_or_path=args.model))
    base.eval()
    sets = prompt_sets(tok)
    print(f"{args.model}, threads {torch.get_num_threads()}; prompts per set: " + ", ".join(f"{k} {len(v[0])} x {v[1]} new" for k, v in sets.items()))
    if args.merged:
        compare_merged(with_lora(base), tok, sets, args.repeats)
        return
    # the adapter is injected into the model in place, so it is built after the plain model is timed
    models = {"plain": lambda: base} | ({"lora": lambda: with_lora(base)} if args.lora else {})
    for label, build in models.items():
        model = build()
        times: dict[str, list[float]] = {"generate": [], "lat": []}
        same = True
        for _ in range(args.repeats):
            t_lib, lib = timed(model, tok, sets, gen._library)
            t_lat, mine = timed(model, tok, sets, gen._greedy)
            times["generate"].append(t_lib)
            times["lat"].append(t_lat)
            same &= lib == mine
        new = sum(len(t) for rows in mine.values() for t in rows)
        a, b = statistics.median(times["generate"]), statistics.median(times["lat"])
        runs = "; ".join(f"{k} " + ", ".join(f"{t:.1f}" for t in v) for k, v in times.items())
        print(f"{label}: model.generate {a:.1f} s, lat {b:.1f} s, ratio {b / a:.2f} ({runs}); {new} new tokens; identical tokens: {same}")
        if not same:
            for name in sets:
                diff = sum(x != y for x, y in zip(lib[name], mine[name]))
                print(f"  {name}: {diff} of {len(lib[name])} rows differ")


def compare_merged(model, tok, sets, repeats: int) -> None:
    """lat's loop on the unmerged adapter vs the same loop with it merged, alternating."""
    times: dict[str, list[float]] = {"unmerged": [], "merged": []}
    for _ in range(repeats):
        t_un, unmerged = timed(model, tok, sets, gen._greedy)
        start = time.perf_counter()
        with merged_lora(model) as layers:
            _, merged = timed(model, tok, sets, gen._greedy)
        times["unmerged"].append(t_un)
        times["merged"].append(time.perf_counter() - start)  # the merge and the restore included
    a, b = statistics.median(times["unmerged"]), statistics.median(times["merged"])
    runs = "; ".join(f"{k} " + ", ".join(f"{t:.1f}" for t in v) for k, v in times.items())
    diff = {name: sum(x != y for x, y in zip(unmerged[name], merged[name])) for name in sets}
    print(f"lora, lat's loop: unmerged {a:.1f} s, merged ({layers} layers) {b:.1f} s, ratio {b / a:.2f} ({runs}); rows that differ: {diff}")


if __name__ == "__main__":
    main()
