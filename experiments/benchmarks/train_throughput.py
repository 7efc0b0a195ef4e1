"""Benchmark: `lat train` vs a plain transformers Trainer + peft script, on the same work.

Same model (the embedded SmolLM2-135M-Instruct), same LoRA (r=8, alpha=16, dropout 0.05, all
linear layers), same optimiser (AdamW, lr 2e-4, betas 0.5/0.999, constant schedule, clip 1.0),
same batches (GSM8K records rendered with the chat template, cut to exactly --seq-len tokens, so
neither side pads), same step count. Each configuration runs in its own process (clean peak
memory); the first --warmup steps are excluded from the timing.

Configurations:
  hf          transformers.Trainer + peft (the baseline)
  lat         LookAheadModule + Lightning Trainer as `lat train` builds it, no probes
  lat+monitor the same with the divergence monitor at the default interval on --probes:
              harmful  the main job's probe set (32 shipped harmful prompts, 16 answer tokens)
              gsm8k    a heavy one (64 GSM8K examples cut to 128 tokens, 16 answer tokens)
  lat+ref     the same as lat, plus a reference forward (adapters disabled) every step (peak memory)
  lat+pack    the same as lat with sequence packing (data.packing: each batch's examples packed
              into rows of at most --seq-len tokens, attention kept within examples)

Lengths (--lengths): ``fixed`` cuts every example to exactly --seq-len tokens (no padding
anywhere); ``natural`` keeps GSM8K's own lengths, cut at --seq-len, in file order, so each side
pads a batch to its longest example (the plain script with transformers' DataCollatorForSeq2Seq)
unless it packs. Tokens/s always counts example tokens, never padding.

Models (--model): ``embedded`` (SmolLM2-135M-Instruct), ``llama-1b`` (a randomly initialised
Llama of 1.1 B parameters with the embedded tokenizer: hidden 2048, 16 layers, 32 heads, 8
key-value heads, MLP 8192; weights cannot be downloaded on the GPU machines), ``tiny`` (the test
model, for --smoke). MFU = model FLOPs per second over the device's bf16 peak: a datasheet figure
on known GPUs; on a CPU the faster of a bf16 and a fp32 matmul measured in the same run where
the CPU multiplies bf16 natively (lat's own check), else the fp32 matmul alone (see
``train_flops`` and ``bf16_peak``).

    python experiments/benchmarks/train_throughput.py --steps 60 --batch 8 --seq-len 128
    python experiments/benchmarks/train_throughput.py --lengths natural --seq-len 512 --configs hf,lat,lat+pack
    python experiments/benchmarks/train_throughput.py --model llama-1b --device cuda --precision bf16-mixed \\
        --lengths natural --seq-len 2048 --batch 8 --configs hf,lat,lat+pack
    python experiments/benchmarks/train_throughput.py --smoke     # seconds: the tiny model, every path
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from lat.core.precision import native_bf16

ROOT = Path(__file__).resolve().parents[2]
GSM8K = ROOT.parent / "shared" / "datasets" / "gsm8k" / "train.jsonl"


def fixed_length_examples(tok, n: int, seq_len: int, offset: int = 0, max_answer_tokens: int | None = None):
    """n GSM8K examples (inference format, vanilla) rendered and cut to exactly seq_len tokens.

    With ``max_answer_tokens`` (probe sets, as LookAheadDataModule builds them) the examples that
    reach seq_len are then cut after that many answer tokens.
    """
    from lat.config import PreviewConfig
    from lat.data.chat import encode
    from lat.data.records import read_records
    from lat.data.tasks import TASKS, build_examples

    src = GSM8K if GSM8K.exists() else "pkg:assets/gsm8k_sample.jsonl"
    recs = read_records(src)
    recs = recs.select(range(offset, min(len(recs), offset + 4 * n)))
    enc, _ = encode(tok, build_examples(recs, TASKS["gsm8k"], PreviewConfig(mode="vanilla")), max_length=seq_len)
    enc = [e for e in enc if len(e.input_ids) == seq_len][:n]
    if len(enc) < n:
        raise SystemExit(f"only {len(enc)} examples reach {seq_len} tokens")
    if max_answer_tokens is not None:
        cut = [e.answer_start + min(max_answer_tokens, len(e.input_ids) - e.answer_start) for e in enc]
        enc = [type(e)(e.input_ids[:c], e.labels[:c], e.answer_start, len(e.input_ids) - c) for e, c in zip(enc, cut)]
    return enc


def natural_examples(tok, n: int, seq_len: int):
    """n GSM8K examples (vanilla) at their own lengths, cut at seq_len, in file order (repeated
    when the file is shorter)."""
    from lat.config import PreviewConfig
    from lat.data.chat import encode
    from lat.data.records import read_records
    from lat.data.tasks import TASKS, build_examples

    recs = read_records(GSM8K if GSM8K.exists() else "pkg:assets/gsm8k_sample.jsonl")
    recs = recs.select(range(min(len(recs), n)))
    enc, _ = encode(tok, build_examples(recs, TASKS["gsm8k"], PreviewConfig(mode="vanilla")), max_length=seq_len)
    return [enc[i % len(enc)] for i in range(n)]


def training_examples(args, tok):
    if args.lengths == "fixed":
        return fixed_length_examples(tok, args.steps * args.batch, args.seq_len)
    return natural_examples(tok, args.steps * args.batch, args.seq_len)


def train_flops(model, lengths: list[int], full: bool) -> float:
    """Model FLOPs of one training pass over examples of these token ``lengths``.

    N = weights of the linear layers and the output head (LoRA's own are negligible). Forward
    2N per token; backward 2N for the activation gradients plus, with full fine-tuning only, 2N
    for the weight gradients. Attention adds 4 * layers * hidden * L per token of an L-token
    example forward (scores and weighted values) and twice that backward. Padding is not counted,
    and neither is what a side skips: the output head is counted at every token although `lat`
    runs it only where an answer token is predicted, so MFU compares the same work on each side.
    """
    from torch import nn

    n = sum(m.weight.numel() for name, m in model.named_modules() if isinstance(m, nn.Linear) and "lora_" not in name)
    cfg = model.config
    linear = (6 if full else 4) * n * sum(lengths)
    attention = 12 * cfg.num_hidden_layers * cfg.hidden_size * sum(length * length for length in lengths)
    return float(linear + attention)


GPU_BF16_PEAK = {"H100 PCIe": 756e12, "H100 NVL": 835e12, "H200": 989.4e12, "H100": 989.4e12, "A100": 312e12, "L40S": 362e12}
"""Dense bf16 tensor-core peaks (FLOP/s) from the vendors' datasheets, most specific name first
(plain H100/H200: the SXM parts)."""


def _matmul_rate(dtype: torch.dtype, size: int = 2048, reps: int = 20) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * size**3 * reps / (time.perf_counter() - start)


def bf16_peak(device: str) -> tuple[float, str]:
    """The device's bf16 peak (FLOP/s) and where it comes from.

    On a CPU: the faster of a bf16 and a fp32 matmul measured now where the CPU multiplies bf16
    natively (lat's own check, :func:`lat.core.precision.native_bf16`: AMX), else the fp32 matmul
    alone (bf16 is emulated there, minutes for the same matmuls, and never the faster one).
    """
    if device == "cuda":
        name = torch.cuda.get_device_name()
        for key, peak in GPU_BF16_PEAK.items():
            if key in name:
                return peak, f"datasheet ({name})"
        raise SystemExit(f"no bf16 peak known for {name}; add it to GPU_BF16_PEAK")
    fp32 = _matmul_rate(torch.float32)
    if not native_bf16("cpu"):
        return fp32, f"measured matmul 2048^3: fp32 {fp32 / 1e9:.0f} GFLOP/s (no native bf16 on this CPU)"
    bf16 = _matmul_rate(torch.bfloat16)
    return max(bf16, fp32), f"measured matmul 2048^3: bf16 {bf16 / 1e9:.0f}, fp32 {fp32 / 1e9:.0f} GFLOP/s"


def harmful_probes(tok, max_answer_tokens: int):
    """The main job's probe set: the first 32 shipped harmful prompts, 16-token answers."""
    from lat.config import PreviewConfig
    from lat.data.chat import encode
    from lat.data.records import read_records
    from lat.data.tasks import TASKS, build_examples

    recs = read_records("pkg:assets/harmful_eval.jsonl").head(32)
    examples = build_examples(recs, TASKS["instruction"], PreviewConfig(mode="vanilla"), input_field="prompt", output_field="response")
    enc, _ = encode(tok, examples, max_length=512, max_answer_tokens=max_answer_tokens)
    return enc


PROBE_SETS = {
    "harmful": harmful_probes,
    "gsm8k": lambda tok, t: fixed_length_examples(tok, 64, 128, offset=6000, max_answer_tokens=t),
}


def lora_model(cfg):
    from lat.models.loading import load_model_and_tokenizer, prepare_for_training

    model, tok = load_model_and_tokenizer(cfg.model, cfg.run.seed)
    return prepare_for_training(model, cfg.model, cfg.lora, cfg.train.compile).model, tok


class StepClock:
    """Wall-clock time of each optimizer step (shared by both sides)."""

    def __init__(self):
        self.times: list[float] = []

    def tick(self):
        self.times.append(time.perf_counter())

    def rate(self, warmup: int, step_tokens: list[int]) -> float:
        """Example tokens per second over the steps after ``warmup`` (``step_tokens``: per step)."""
        return sum(step_tokens[warmup + 1 : len(self.times)]) / self.seconds(warmup)

    def seconds(self, warmup: int) -> float:
        return self.times[-1] - self.times[warmup]


def step_tokens(enc, batch: int) -> list[int]:
    """Example tokens of each step's batch (steps taken in order)."""
    return [sum(len(e.input_ids) for e in enc[i : i + batch]) for i in range(0, len(enc), batch)]


def throughput(clock: StepClock, args, enc, model, full: bool) -> dict:
    """tokens/s and model FLOP/s over the timed steps."""
    tokens = step_tokens(enc, args.batch)
    timed = [len(e.input_ids) for e in enc[(args.warmup + 1) * args.batch : len(clock.times) * args.batch]]
    flops = train_flops(model, timed, full) / clock.seconds(args.warmup)
    return {"tokens_per_s": clock.rate(args.warmup, tokens), "model_flops_per_s": flops}


def run_hf(args, cfg) -> dict:
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments

    model, tok = lora_model(cfg)
    enc = training_examples(args, tok)
    data = [{"input_ids": e.input_ids, "attention_mask": [1] * len(e.input_ids), "labels": e.labels} for e in enc]
    clock = StepClock()

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            clock.tick()

    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=args.batch,
            max_steps=args.steps,
            learning_rate=2e-4,
            adam_beta1=0.5,
            adam_beta2=0.999,
            weight_decay=0.0,
            lr_scheduler_type="constant",
            warmup_steps=0,
            max_grad_norm=1.0,
            logging_steps=10,
            report_to=[],
            save_strategy="no",
            use_cpu=args.device == "cpu",
            disable_tqdm=True,
            dataloader_num_workers=0,
            seed=0,
            bf16=args.precision.startswith("bf16"),
        )
        collator = DataCollatorForSeq2Seq(tok, padding="longest", label_pad_token_id=-100)
        trainer = Trainer(model=model, args=targs, train_dataset=data, data_collator=collator, callbacks=[Clock()])
        trainer._get_train_sampler = lambda *a, **k: torch.utils.data.SequentialSampler(data)  # same batches as lat, in order
        trainer.train()
    return throughput(clock, args, enc, model, full=False)


def run_lat(args, cfg, monitor: bool, reference_every_step: bool, pack: bool = False) -> dict:
    import functools

    import lightning as L
    from torch.utils.data import DataLoader

    from lat.callbacks.divergence import DivergenceMonitor
    from lat.data.chat import collate, collate_packed
    from lat.data.datamodule import longest_first
    from lat.models.module import LookAheadModule
    from lat.workflows.finetune import build_trainer

    model, tok = lora_model(cfg)
    enc = training_examples(args, tok)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    col = functools.partial(collate, pad_id=pad)
    packed = functools.partial(collate_packed, pad_id=pad, width=args.seq_len)
    loader = DataLoader(enc, batch_size=args.batch, shuffle=False, collate_fn=packed if pack else col)
    module = LookAheadModule(model, cfg.train)
    if reference_every_step:
        module.loss_needs_reference = True  # forces the adapters-disabled forward in every step
    clock = StepClock()

    class Clock(L.Callback):
        def on_train_batch_end(self, *a, **k):
            clock.tick()

    callbacks: list = [Clock()]
    mon = None
    if monitor:
        probes = PROBE_SETS[args.probes](tok, cfg.train.divergence_positions)
        order = longest_first([len(e.input_ids) for e in probes])  # as LookAheadDataModule.probe_dataloaders
        probe_loader = DataLoader(probes, batch_size=cfg.data.eval_batch_size, sampler=order, collate_fn=col)
        mon = DivergenceMonitor(
            {args.probes: probe_loader}, cfg.train.divergence_every_n_steps, cfg.train.divergence_positions, None, cfg.train.divergence_reference_cache_mb
        )
        out_probe = {"probe_examples": len(probes), "probe_tokens": sum(len(e.input_ids) for e in probes)}
        run_times: list[tuple[int, float]] = []
        plain_run = mon.run

        def timed_run(trainer, module):  # time spent inside each measurement, by step
            t0 = time.perf_counter()
            result = plain_run(trainer, module)
            if result:
                run_times.append((trainer.global_step, round(time.perf_counter() - t0, 2)))
            return result

        mon.run = timed_run
        callbacks.insert(0, mon)
    trainer = build_trainer(cfg, Path(tempfile.mkdtemp()), callbacks, [], has_val=False)
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    wall = time.perf_counter() - start
    out = {**throughput(clock, args, enc, model, full=False), "fit_wall_s": wall}
    if mon is not None:
        out["monitor_runs"] = len({r["step"] for r in mon.rows})
        out.update(out_probe, monitor_s_by_step=run_times, monitor_s=sum(t for _, t in run_times))
    return out


MODELS = {"embedded": "model=embedded", "tiny": "model=tiny"}


def random_llama_1b(folder: Path) -> str:
    """Save a randomly initialised 1.1 B Llama with the embedded model's tokenizer in ``folder``."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    from lat.config import ModelConfig
    from lat.models.loading import load_model_and_tokenizer

    if (folder / "config.json").exists():
        return str(folder)
    _, tok = load_model_and_tokenizer(ModelConfig(name_or_path="embedded"))
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        torch_dtype="bfloat16",
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return str(folder)


def child(args) -> None:
    from lat.config import load_config

    torch.manual_seed(0)
    model = MODELS.get(args.model) or f"model.name_or_path={args.model_folder}"
    dtype = ["model.dtype=bfloat16"] if args.model == "llama-1b" else []
    cfg = load_config(
        [
            model,
            *dtype,
            "logging.wandb_mode=disabled",
            "lora.r=8",
            "lora.alpha=16",
            "lora.dropout=0.05",
            "train.lr=2e-4",
            "train.schedule=constant",
            f"train.max_steps={args.steps}",
            "train.epochs=1000",
            f"train.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}",
            "train.devices=1",
            "train.checkpoint_every_n_steps=0",
            f"train.precision={args.precision}",
            f"data.max_length={args.seq_len}",
        ]
    )
    runners = {
        "hf": lambda: run_hf(args, cfg),
        "lat": lambda: run_lat(args, cfg, monitor=False, reference_every_step=False),
        "lat+monitor": lambda: run_lat(args, cfg, monitor=True, reference_every_step=False),
        "lat+ref": lambda: run_lat(args, cfg, monitor=False, reference_every_step=True),
        "lat+pack": lambda: run_lat(args, cfg, monitor=False, reference_every_step=False, pack=True),
    }
    result = runners[args.child]()
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.device == "cuda":
        result["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--configs", default="hf,lat,lat+monitor,lat+ref")
    ap.add_argument("--probes", default="harmful", choices=sorted(PROBE_SETS))
    ap.add_argument("--lengths", default="fixed", choices=["fixed", "natural"], help="fixed: every example --seq-len tokens; natural: GSM8K's own")
    ap.add_argument("--model", default="embedded", choices=["embedded", "llama-1b", "tiny"])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--precision", default="32-true", help="train.precision of both sides (32-true, bf16-mixed)")
    ap.add_argument("--smoke", action="store_true", help="the tiny model, 6 steps, every configuration: checks the paths, measures nothing")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--model-folder", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.smoke:
        args.model, args.steps, args.warmup, args.batch, args.seq_len, args.lengths = "tiny", 6, 2, 4, 256, "natural"
        args.configs = "hf,lat,lat+monitor,lat+ref,lat+pack"
    if args.child:
        return child(args)
    folder = random_llama_1b(Path(tempfile.gettempdir()) / "lat-llama-1b-random") if args.model == "llama-1b" else ""
    peak, peak_source = bf16_peak(args.device)
    results = {}
    for name in args.configs.split(","):
        cmd = [
            sys.executable,
            __file__,
            "--child",
            name,
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
            "--probes",
            args.probes,
            "--batch",
            str(args.batch),
            "--seq-len",
            str(args.seq_len),
            "--lengths",
            args.lengths,
            "--model",
            args.model,
            "--device",
            args.device,
            "--precision",
            args.precision,
            "--model-folder",
            folder,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "disabled"})
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
        results[name] = json.loads(line[7:])
        print(name, results[name], flush=True)
    print(
        f"\nmodel {args.model} on {args.device} ({args.precision}), steps {args.steps} (first {args.warmup} excluded), batch {args.batch}, "
        f"{args.lengths} lengths up to {args.seq_len} tokens, torch threads {torch.get_num_threads()}; peak {peak / 1e12:.2f} TFLOP/s ({peak_source})"
    )
    print("| configuration | tokens/s | model TFLOP/s | MFU | peak RSS (MiB) |\n|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['tokens_per_s']:.0f} | {r['model_flops_per_s'] / 1e12:.3f} | {100 * r['model_flops_per_s'] / peak:.1f} % | {r['peak_rss_mib']:.0f} |"
        )
    for mine in ("lat", "lat+pack"):
        if "hf" in results and mine in results:
            print(f"{mine} / hf tokens/s ratio: {results[mine]['tokens_per_s'] / results['hf']['tokens_per_s']:.3f}")
    if "lat" in results and "lat+monitor" in results:
        a, b = results["lat"]["fit_wall_s"], results["lat+monitor"]["fit_wall_s"]
        m = results["lat+monitor"]
        print(f"divergence monitor wall-time overhead: {100 * (b - a) / a:+.1f} % ({m['monitor_runs']} monitor runs)")
        print(
            f"time inside the monitor: {m['monitor_s']:.1f} s = {100 * m['monitor_s'] / (b - m['monitor_s']):.1f} % of the rest of the run; by step: {m['monitor_s_by_step']}"
        )
    if "lat" in results and "lat+ref" in results:
        print(f"peak memory, reference forward every step vs none: {results['lat+ref']['peak_rss_mib'] / results['lat']['peak_rss_mib']:.3f}x")


if __name__ == "__main__":
    main()
