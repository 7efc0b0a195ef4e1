"""Where one LoRA training step of the main job goes: torch profiler, top operators.

Builds the quickstart's model (the cached aligned seed, or ``--model``), its first training batch
and the LookAheadModule's loss, runs two warm-up steps, times ``--steps`` more, and profiles one.
Compare LoRA dropout on and off, or fp32 and bf16 autocast, in the same process:

    python experiments/benchmarks/step_profile.py --dropout 0.05 0.0
    python experiments/benchmarks/step_profile.py --autocast none bfloat16
    python experiments/benchmarks/step_profile.py --attn sdpa eager --autocast none bfloat16
    python experiments/benchmarks/step_profile.py --dtype float32 bfloat16   # weights stored in bf16
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile


def build(dropout: float, model_spec: str | None, attn: str | None = None, dtype: str = "float32"):
    from lat.config import apply_overrides, load_config
    from lat.models.loading import load_model_and_tokenizer, prepare_for_training
    from lat.models.module import LookAheadModule
    from lat.workflows.common import build_datamodule
    from lat.workflows.start import starting_point

    overrides = ["experiment=quickstart", "train.start_from=seed", f"lora.dropout={dropout}", "data.probes=[]", f"model.dtype={dtype}"]
    cfg = starting_point(load_config(overrides))
    if attn:
        cfg = apply_overrides(cfg, [f"model.attn_implementation={attn}"])
    if model_spec:
        cfg = apply_overrides(cfg, [f"model.name_or_path={model_spec}"])
    model, tok = load_model_and_tokenizer(cfg.model, cfg.run.seed)
    prepared = prepare_for_training(model, cfg.model, cfg.lora, cfg.train.compile)
    dm = build_datamodule(cfg, tok)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    module = LookAheadModule(prepared.model, cfg.train).train()
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=cfg.train.lr)
    return module, opt, batch


def step(module, opt, batch, autocast: str | None) -> None:
    with torch.autocast("cpu", dtype=getattr(torch, autocast or "float32"), enabled=autocast is not None):
        loss = module._step(batch)
    loss.backward()
    opt.step()
    opt.zero_grad()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dropout", type=float, nargs="+", default=[0.05], help="LoRA dropout values to compare")
    ap.add_argument("--autocast", nargs="+", default=["none"], help="none | bfloat16 (CPU autocast), to compare")
    ap.add_argument("--attn", nargs="+", default=["default"], help="attention kernels to compare (default | sdpa | eager)")
    ap.add_argument("--dtype", nargs="+", default=["float32"], help="model.dtype values to compare (the frozen weights' storage dtype)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per setting")
    ap.add_argument("--model", default=None, help="model instead of the cached aligned seed")
    ap.add_argument("--top", type=int, default=8, help="operators listed per setting")
    args = ap.parse_args()
    for dropout, attn, dtype in [(d, a, t) for d in args.dropout for a in args.attn for t in args.dtype]:
        module, opt, batch = build(dropout, args.model, None if attn == "default" else attn, dtype)
        for cast in args.autocast:
            cast = None if cast == "none" else cast
            for _ in range(2):
                step(module, opt, batch, cast)
            times = []
            for _ in range(args.steps):
                start = time.perf_counter()
                step(module, opt, batch, cast)
                times.append(time.perf_counter() - start)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                step(module, opt, batch, cast)
            total = sum(e.self_cpu_time_total for e in prof.key_averages())
            tokens = int(batch["attention_mask"].sum())
            print(
                f"\n## dropout {dropout}, attention {attn}, dtype {dtype}, autocast {cast or 'none'}: batch {tuple(batch['input_ids'].shape)}, "
                f"median step {statistics.median(times):.2f} s ({tokens / statistics.median(times):.0f} tokens/s)"
            )
            print("| operator | self CPU s | share |\n|---|---|---|")
            for e in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[: args.top]:
                print(f"| {e.key} | {e.self_cpu_time_total / 1e6:.2f} | {e.self_cpu_time_total / total:.1%} |")


if __name__ == "__main__":
    main()
