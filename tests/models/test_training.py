"""Training: LoRA/base invariants, reference without a copy, divergence, checkpoints, resume, outputs."""

from __future__ import annotations

import csv
import json

import lightning as L
import pytest
import torch

from lat.config import apply_overrides, load_config
from lat.models.loading import load_model_and_tokenizer, prepare_for_training
from lat.models.module import LookAheadModule
from lat.workflows.common import build_datamodule
from lat.workflows.finetune import seed_answer_fn
from lat.workflows.train import train

SMOKE = ["experiment=smoke", "lora.dropout=0.0", "train.lr=1e-2", "train.max_steps=-1"]


def _cfg(tmp_path, *extra):
    return load_config([*SMOKE, f"run.root={tmp_path}", *extra])


def _setup(cfg):
    model, tok = load_model_and_tokenizer(cfg.model, cfg.run.seed)
    prepared = prepare_for_training(model, cfg.model, cfg.lora, cfg.train.compile)
    dm = build_datamodule(cfg, tok, answer_fn=seed_answer_fn(cfg, prepared.model, tok))
    dm.setup("fit")
    return LookAheadModule(prepared.model, cfg.train, prepared.frozen_reference), dm


def _trainer(**kw):
    return L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, **kw)


def _probe_kl(module, dm):
    batch = next(iter(dm.probe_dataloaders()["task"]))
    module.eval()
    sums = module.probe_divergence(batch, 8)
    return sums["kl"] / sums["count"]


def test_training_starts_in_train_mode_with_a_frozen_reference_in_eval(tmp_path):
    lora, _ = _setup(_cfg(tmp_path, "lora.dropout=0.1"))
    assert all(m.training for m in lora.model.modules())
    full, _ = _setup(_cfg(tmp_path, "lora.enabled=false"))
    assert all(m.training for m in full.model.modules())
    assert not any(m.training for m in full.frozen_reference.modules())


def test_one_step_changes_lora_only(tmp_path):
    module, dm = _setup(_cfg(tmp_path))
    before = {n: p.detach().clone() for n, p in module.model.named_parameters()}
    _trainer(max_steps=1).fit(module, datamodule=dm)
    changed_lora = [n for n, p in module.model.named_parameters() if "lora_" in n and not torch.equal(p, before[n])]
    base = [n for n, p in module.model.named_parameters() if "lora_" not in n]
    assert changed_lora, "no LoRA weight moved"
    assert base and all(torch.equal(p, before[n]) for n, p in module.model.named_parameters() if n in base)
    assert all(not p.requires_grad for n, p in module.model.named_parameters() if n in base)


def test_kl_zero_before_training_and_positive_after(tmp_path):
    module, dm = _setup(_cfg(tmp_path))
    kl0 = _probe_kl(module, dm)
    assert torch.equal(kl0, torch.zeros_like(kl0))  # LoRA B = 0: exactly the reference
    _trainer(max_steps=3).fit(module, datamodule=dm)
    assert (_probe_kl(module, dm) > 0).all()


def test_full_finetuning_uses_a_frozen_copy(tmp_path):
    module, dm = _setup(_cfg(tmp_path, "lora.enabled=false"))
    assert module.frozen_reference is not None
    ref_before = {n: p.clone() for n, p in module.frozen_reference.named_parameters()}
    assert torch.equal(_probe_kl(module, dm), torch.zeros(8, dtype=torch.float64))
    _trainer(max_steps=2).fit(module, datamodule=dm)
    assert all(torch.equal(p, ref_before[n]) for n, p in module.frozen_reference.named_parameters())
    assert (_probe_kl(module, dm) > 0).all()


def test_fast_dev_run(tmp_path):
    module, dm = _setup(_cfg(tmp_path, "data.val_size=2"))
    _trainer(fast_dev_run=True).fit(module, datamodule=dm)


def _lora_state(module):
    return {k: v.clone() for k, v in module.trainable_state_dict().items()}


def test_run_outputs_checkpoint_and_adapter(tmp_path):
    result = train(_cfg(tmp_path, "train.save_merged=true"))
    run = result.run_dir
    for name in (
        "config.yaml",
        "environment.json",
        "metrics.json",
        "divergence.csv",
        "checkpoints/last.ckpt",
        "adapter/adapter_config.json",
        "merged/config.json",
        "logs/metrics.csv",
    ):
        assert (run / name).exists(), name
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert set(ckpt["state_dict"]) == set(_lora_state(result.module)) and all("lora_" in k for k in ckpt["state_dict"])
    assert ckpt["optimizer_states"]
    # the peft adapter reloads onto a fresh base and reproduces the trained model
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base, tok = load_model_and_tokenizer(_cfg(tmp_path).model, 0)
    reloaded = PeftModel.from_pretrained(base, str(run / "adapter")).eval()
    merged = AutoModelForCausalLM.from_pretrained(str(run / "merged")).eval()
    ids = torch.tensor([tok("<|im_start|>user\nhi<|im_end|>\n")["input_ids"]])
    mask = torch.ones_like(ids)
    result.module.eval()
    with torch.no_grad():
        want = result.module(ids, mask)
        assert torch.allclose(reloaded(input_ids=ids, attention_mask=mask).logits, want, atol=1e-5)
        assert torch.allclose(merged(input_ids=ids, attention_mask=mask).logits, want, atol=1e-4)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["params/trainable"] < metrics["params/total"] and metrics["global_step"] == 2
    rows = list(csv.DictReader(open(run / "divergence.csv")))
    assert {r["step"] for r in rows} == {"0", "2"} and rows[0]["kl"] == "0.0"
    # step 0 is recorded without forward passes; its counts must equal the real ones
    module, dm = _setup(_cfg(tmp_path, "run.name=counts"))
    real = sum(module.probe_divergence(b, 16)["count"] for b in dm.probe_dataloaders()["harmful"])
    assert [int(r["count"]) for r in rows if r["step"] == "0" and r["probe"] == "harmful"] == [int(c) for c in real]
    # probe rows stop after divergence_positions answer tokens
    assert all(len(e.input_ids) - e.answer_start <= 16 for e in dm.probe_sets["task"].encoded)


def test_resume_continues_to_the_same_weights(tmp_path):
    straight = train(_cfg(tmp_path, "run.name=straight", "train.epochs=2"))
    first = train(_cfg(tmp_path, "run.name=split", "train.epochs=1"))
    assert first.metrics["global_step"] == 2
    resumed = train(_cfg(tmp_path, "run.name=split", "train.epochs=2", "run.resume=true"))
    assert resumed.metrics["global_step"] == 4
    assert (resumed.run_dir / "logs" / "metrics.csv").exists() and (resumed.run_dir / "logs" / "resume-1" / "metrics.csv").exists()
    a, b = _lora_state(straight.module), _lora_state(resumed.module)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_start_adapter_is_the_reference(tmp_path):
    first = train(_cfg(tmp_path, "run.name=first"))
    cfg = _cfg(tmp_path, "run.name=second", f"model.adapter_path={first.run_dir / 'adapter'}")
    module, dm = _setup(cfg)
    assert torch.equal(_probe_kl(module, dm), torch.zeros(8, dtype=torch.float64))
    batch = next(iter(dm.probe_dataloaders()["task"]))
    first.module.eval()
    with torch.no_grad():
        start = first.module(batch["input_ids"], batch["attention_mask"])
    assert torch.allclose(module.reference_logits(batch["input_ids"], batch["attention_mask"]), start, atol=1e-5)


def test_unknown_loss_and_schedule_fail_cleanly(tmp_path):
    from lat.core.errors import UserError

    with pytest.raises(UserError, match="train.loss: unknown loss 'dpo'"):
        _setup(_cfg(tmp_path, "train.loss=dpo"))


def test_column_restricted_loss_equals_full_logits_loss(tmp_path):
    module, dm = _setup(_cfg(tmp_path, "lora.r=2"))
    torch.manual_seed(0)
    for p in module.model.parameters():
        if p.requires_grad:
            p.data.normal_(0, 0.5)  # a non-trivial adapter
    batch = next(iter(dm.train_dataloader()))
    module.eval()
    with torch.no_grad():
        fast = module._step(batch)
        logits = module(batch["input_ids"], batch["attention_mask"])  # all (B, T, V)
        plain = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten(), ignore_index=-100)
    assert torch.allclose(fast, plain, rtol=1e-6, atol=1e-6)
    assert module._column_logits  # the fast path was the one measured


def test_wandb_offline_run_gets_curves_and_sample_tables(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    result = train(_cfg(tmp_path, "logging.wandb_mode=offline"))
    run = result.run_dir
    assert (run / "wandb_id.txt").exists()
    media = "wandb/offline-run-*/files/media/table"
    assert list(run.glob(f"{media}/samples/safety_*.json")) and list(run.glob(f"{media}/samples/utility_*.json"))
    assert list(run.glob(f"{media}/divergence/harmful/table_*.json"))
    import wandb

    wandb.finish()


def test_monitor_reuses_reference_logits_and_matches_recomputing(tmp_path):
    from lat.callbacks.divergence import DivergenceMonitor

    module, dm = _setup(_cfg(tmp_path))
    _trainer(max_steps=3).fit(module, datamodule=dm)
    loaders = dm.probe_dataloaders()
    calls = []
    real = module.probe_reference
    module.probe_reference = lambda b, t: calls.append(1) or real(b, t)
    cached = DivergenceMonitor(loaders, 0, 8, None, reference_cache_mb=1024)
    first = cached.measure(module, "task")
    n_batches = len(calls)
    assert n_batches == len(loaders["task"]) > 0
    again = cached.measure(module, "task")
    assert len(calls) == n_batches  # second pass ran only the tuned model
    fresh = DivergenceMonitor(loaders, 0, 8, None, reference_cache_mb=0).measure(module, "task")
    assert len(calls) == 2 * n_batches  # budget 0: recomputed
    assert first == again == fresh
    assert first["kl"][0] > 0


def test_reference_cache_budget_and_batch_identity():
    from lat.callbacks.divergence import ReferenceCache

    ids, mask, labels = torch.tensor([[1, 2, 3]]), torch.ones(1, 3, dtype=torch.long), torch.tensor([[-100, 2, 3]])
    logits = torch.zeros(2, 10)  # 80 bytes
    cache = ReferenceCache(100)
    cache.put(("p", 0), (ids, mask, labels), logits)
    cache.put(("p", 1), (ids, mask, labels), logits)  # would exceed 100 bytes: not kept
    assert cache.get(("p", 0), (ids, mask, labels)) is logits
    assert cache.get(("p", 1), (ids, mask, labels)) is None
    assert cache.get(("p", 0), (torch.tensor([[1, 2, 4]]), mask, labels)) is None  # another batch under that key
    assert cache.get(("p", 0), (ids, mask, torch.tensor([[-100, -100, 3]]))) is None  # other answer positions
    assert cache.get(("p", 0), (ids[:, :2], mask[:, :2], labels[:, :2])) is None  # other shape
    assert cache.used == 80


def test_runs_from_the_same_model_share_reference_logits_and_match_recomputing(tmp_path):
    from lat.callbacks.divergence import DivergenceMonitor, shared_reference_cache
    from lat.config.identity import reference_identity

    cfg = _cfg(tmp_path)
    shared = shared_reference_cache(reference_identity(cfg), 2**30)
    assert shared_reference_cache(reference_identity(cfg), 2**30) is shared
    calls, curves = [], []
    for steps in (2, 3):  # two fine-tunings of the same starting model, as the methods of one `lat run`
        module, dm = _setup(cfg)
        _trainer(max_steps=steps).fit(module, datamodule=dm)
        real = module.probe_reference
        module.probe_reference = lambda b, t, real=real: calls.append(1) or real(b, t)
        loaders = dm.probe_dataloaders()
        calls.clear()
        curves.append(DivergenceMonitor(loaders, 0, 8, None, reference_cache=shared).measure(module, "task"))
        assert len(calls) == (len(loaders["task"]) if steps == 2 else 0)  # the second run computed no reference logits
        fresh = DivergenceMonitor(loaders, 0, 8, None, reference_cache_mb=0).measure(module, "task")
        assert curves[-1] == fresh
    assert curves[0] != curves[1] and curves[0]["kl"][0] > 0


@pytest.mark.parametrize(
    "override",
    ["train.precision=bf16-true", "model.dtype=bfloat16", "lora.enabled=false", "model.attn_implementation=eager", "run.seed=7", "train.compile=true"],
)
def test_reference_identity_changes_with_what_the_reference_logits_depend_on(tmp_path, override):
    from lat.callbacks.divergence import shared_reference_cache
    from lat.config.identity import reference_identity

    cfg = _cfg(tmp_path)
    other = apply_overrides(cfg, [override])
    assert reference_identity(other) != reference_identity(cfg)
    first = shared_reference_cache(reference_identity(cfg), 2**20)
    assert shared_reference_cache(reference_identity(other), 2**20) is not first  # one reference kept at a time
    assert shared_reference_cache(reference_identity(cfg), 2**20) is not first


def test_constrained_loss_trains_with_the_adapter_disabled_reference(tmp_path):
    module, dm = _setup(_cfg(tmp_path, "train.loss=constrained"))
    assert module.loss_needs_reference
    before = {n: p.detach().clone() for n, p in module.model.named_parameters() if "lora_B" in n}
    _trainer(max_steps=2).fit(module, datamodule=dm)
    assert any(not torch.equal(p, before[n]) for n, p in module.model.named_parameters() if n in before)
    assert torch.isfinite(torch.tensor(float(module.trainer.callback_metrics["train/loss"])))
