"""Benchmark: the main job's evaluation of one model with fp32 generation vs bf16 autocast.

The quickstart's evaluation (44 harmful prompts for RSR, the same 44 with a 3-token prefill for
JSR@3, keyword + embedding judges, 32 arithmetic problems for utility) of the cached aligned
seed, run with ``eval.precision=32-true`` and ``eval.precision=bf16-mixed`` alternately in one
process on one model, ``--repeats`` times each, so machine load hits both sides alike. Prints
every run's safety and utility seconds, the medians, their ratio, and the headline metrics of
each precision (greedy decoding: every repeat of one precision gives the same metrics).

    python experiments/benchmarks/eval_precision.py --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

HEADLINE = ("safety/rsr", "safety/jsr@3", "safety/embedding/rsr", "safety/embedding/jsr@3", "utility/gsm8k_acc", "utility/gsm8k_last_number_acc")


def evaluators(model_spec: str | None):
    """(model, tokenizer, {precision: Evaluator}) for the quickstart's evaluation settings."""
    from lat.config import apply_overrides, load_config
    from lat.workflows.common import build_evaluator
    from lat.workflows.evaluate import load_for_eval
    from lat.workflows.start import starting_point

    cfg = starting_point(load_config(["experiment=quickstart", "train.start_from=seed"]))
    if model_spec:
        cfg = apply_overrides(cfg, [f"model.name_or_path={model_spec}"])
    model, tok = load_for_eval(cfg.model, cfg.run.seed)
    evs = {p: build_evaluator(apply_overrides(cfg, [f"eval.precision={p}"])) for p in ("32-true", "bf16-mixed")}
    return model, tok, evs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="evaluations per precision, alternating")
    ap.add_argument("--model", default=None, help="model instead of the cached aligned seed")
    args = ap.parse_args()
    model, tok, evs = evaluators(args.model)
    seconds: dict[str, list[float]] = {p: [] for p in evs}
    metrics: dict[str, dict] = {}
    for rep in range(args.repeats):
        for precision, ev in evs.items():
            start = time.perf_counter()
            safety, _ = ev.safety(model, tok)
            mid = time.perf_counter()
            utility, _ = ev.utility(model, tok)
            end = time.perf_counter()
            seconds[precision].append(end - start)
            metrics[precision] = {**safety, **utility}
            print(f"repeat {rep} {precision}: safety {mid - start:.1f} s, utility {end - mid:.1f} s, total {end - start:.1f} s", flush=True)
    med = {p: statistics.median(s) for p, s in seconds.items()}
    print("\n| precision | median total s | runs (s) | " + " | ".join(HEADLINE) + " |")
    print("|---|---|---|" + "---|" * len(HEADLINE))
    for p in evs:
        cells = [f"{100 * metrics[p][k]:.1f}" if metrics[p].get(k) is not None else "-" for k in HEADLINE]
        print(f"| {p} | {med[p]:.1f} | {', '.join(f'{s:.1f}' for s in seconds[p])} | " + " | ".join(cells) + " |")
    print(f"\nbf16 / fp32 median time: {med['bf16-mixed'] / med['32-true']:.2f}")


if __name__ == "__main__":
    main()
