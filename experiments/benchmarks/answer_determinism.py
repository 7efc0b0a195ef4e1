"""Check: do the base model's greedy answers (the seed SFT's training data) depend on the thread count?

The seed's SFT trains on the unaligned base's own greedy answers to the benign anchors (and, for
``align=deep``, to the harmful requests), generated once and cached under a key that records the
precision but not the thread count. This generates the first ``--prompts`` anchors' answers as
``lat align`` does (``eval.batch_size`` prompts per batch, ``align.benign_max_new_tokens``
tokens) with 1 and then 2 intra-op threads, in fp32 and under bf16 autocast, in one process on one
model, and prints how many answers differ between the thread counts for each precision, and
between the precisions.

    python experiments/benchmarks/answer_determinism.py --prompts 88
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=88, help="how many of the deep seed's benign anchors")
    ap.add_argument("--threads", type=int, nargs=2, default=[1, 2], help="the two thread counts compared")
    args = ap.parse_args()

    import torch

    from lat.config import load_config
    from lat.data.records import read_records
    from lat.data.tasks import Example
    from lat.evaluation.generate import GenerationSettings, answer
    from lat.models.loading import load_for_eval

    cfg = load_config(["experiment=quickstart", "align=deep"])
    prompts = read_records(cfg.align.benign_path).texts("prompt")[: args.prompts]
    model, tok = load_for_eval(cfg.model, cfg.align.seed)
    answers: dict[tuple[str, int], list[str]] = {}
    for cast in (None, "bfloat16"):
        settings = GenerationSettings(max_new_tokens=cfg.align.benign_max_new_tokens, batch_size=cfg.eval.batch_size, autocast=cast)
        for threads in args.threads:
            torch.set_num_threads(threads)
            start = time.perf_counter()
            answers[(cast or "fp32", threads)] = answer(model, tok, [Example(p, "") for p in prompts], settings)
            print(f"{cast or 'fp32'}, {threads} thread(s): {time.perf_counter() - start:.0f} s")
    one, two = args.threads

    def differ(a: list[str], b: list[str]) -> int:
        return sum(x != y for x, y in zip(a, b))

    for cast in ("fp32", "bfloat16"):
        print(f"{cast}: {differ(answers[(cast, one)], answers[(cast, two)])} of {len(prompts)} answers differ between {one} and {two} threads")
    print(f"fp32 vs bfloat16 ({two} threads): {differ(answers[('fp32', two)], answers[('bfloat16', two)])} of {len(prompts)} differ")


if __name__ == "__main__":
    main()
