"""Sequence packing (data.packing): rows, positions, the same per-example loss as unpacked;
regional compilation (train.compile)."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from lat.config import load_config
from lat.data.chat import IGNORE_INDEX, Encoded, collate, collate_packed, pack_rows
from lat.models.divergence import answer_positions, shift_targets
from lat.models.loading import load_model_and_tokenizer, prepare_for_training
from lat.models.losses import token_logprobs
from lat.models.module import LookAheadModule
from lat.workflows.common import build_datamodule
from lat.workflows.finetune import seed_answer_fn

SMOKE = ["experiment=smoke", "lora.dropout=0.0", "train.max_steps=-1", "data.batch_size=8"]
TOLERANCE = 1e-5
"""Largest difference allowed between packed and unpacked log-probabilities and losses (fp32)."""


def test_pack_rows_first_fit_decreasing_by_hand():
    # longest first: 5 -> row 0 (2 left), 4 -> row 1 (3 left), 3 -> row 1 (0 left), 2 -> row 0
    assert pack_rows([5, 3, 4, 2], 7) == [[0, 3], [2, 1]]
    assert pack_rows([9, 1], 7) == [[0], [1]]  # too long for any row: a row of its own
    assert pack_rows([2, 2, 2], 100) == [[0, 1, 2]]


def test_collate_packed_rows_labels_and_restarting_positions_by_hand():
    a = Encoded(input_ids=[1, 2, 3], labels=[IGNORE_INDEX, 2, 3], answer_start=1)
    b = Encoded(input_ids=[4, 5], labels=[IGNORE_INDEX, 5], answer_start=1)
    c = Encoded(input_ids=[6, 7, 8, 9], labels=[IGNORE_INDEX, IGNORE_INDEX, 8, 9], answer_start=2)
    out = collate_packed([a, b, c], pad_id=0, width=6)  # rows: [c, b], [a] + 3 pads
    assert out["input_ids"].tolist() == [[6, 7, 8, 9, 4, 5], [1, 2, 3, 0, 0, 0]]
    assert out["labels"].tolist() == [[-100, -100, 8, 9, -100, 5], [-100, 2, 3, -100, -100, -100]]
    assert out["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1], [0, 1, 2, 0, 1, 2]]
    assert int(out["tokens"]) == 9 and "attention_mask" not in out


def test_answer_positions_restart_at_every_answer_and_match_the_single_answer_count():
    mask = torch.tensor([[False, True, True, False, False, True, True, True]])
    assert answer_positions(mask).tolist() == [[0, 1, 2, 0, 0, 1, 2, 3]]
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):  # one answer per row (unpacked): the plain running count
        t = 12
        lo = int(torch.randint(0, t, (1,), generator=gen))
        hi = int(torch.randint(lo, t + 1, (1,), generator=gen))
        row = torch.zeros(1, t, dtype=torch.bool)
        row[0, lo:hi] = True
        assert torch.equal(answer_positions(row), torch.cumsum(row.long(), 1) * row.long())


def _module(tmp_path, *extra):
    cfg = load_config([*SMOKE, f"run.root={tmp_path}", *extra])
    L.seed_everything(0)
    model, tok = load_model_and_tokenizer(cfg.model, cfg.run.seed)
    prepared = prepare_for_training(model, cfg.model, cfg.lora, cfg.train.compile)
    dm = build_datamodule(cfg, tok, answer_fn=seed_answer_fn(cfg, prepared.model, tok))
    dm.setup("fit")
    module = LookAheadModule(prepared.model, cfg.train, prepared.frozen_reference)
    torch.manual_seed(0)
    for p in module.model.parameters():
        if p.requires_grad:
            p.data.normal_(0, 0.3)  # a non-trivial adapter, so tuned and reference differ
    return module.eval(), dm


def _per_example_logprobs(module, batch) -> list[torch.Tensor]:
    """Each example's answer-token log-probabilities, in the order they appear in the batch rows."""
    targets, mask = shift_targets(batch["labels"])
    with torch.no_grad():
        logits = module._logits(module.model, batch, None)
    lp = token_logprobs(logits[mask], targets[mask])
    pos = answer_positions(mask)[mask]
    starts = (pos == 1).nonzero().squeeze(1).tolist() + [len(pos)]
    return [lp[s:e] for s, e in zip(starts, starts[1:])]


@pytest.mark.parametrize("loss", ["ce", "constrained"])
def test_packed_batch_gives_each_example_its_unpacked_loss(tmp_path, loss):
    module, dm = _module(tmp_path, f"train.loss={loss}")
    examples = [dm.train_set[i] for i in range(8)]
    widest = max(len(e.input_ids) for e in examples)
    width = 3 * widest  # several examples per row
    plain = collate(examples, dm.pad_id)
    packed = collate_packed(examples, dm.pad_id, width)
    assert packed["input_ids"].shape[0] < len(examples)  # something was packed
    order = [i for row in pack_rows([len(e.input_ids) for e in examples], width) for i in row]
    unpacked = _per_example_logprobs(module, plain)
    together = _per_example_logprobs(module, packed)
    assert len(together) == len(examples)
    for k, i in enumerate(order):  # attention never crosses examples: each one scores as alone
        assert torch.allclose(together[k], unpacked[i], atol=TOLERANCE, rtol=0), (i, (together[k] - unpacked[i]).abs().max())
    with torch.no_grad():
        assert abs(float(module._step(packed)) - float(module._step(plain))) < TOLERANCE


def test_packing_trains_through_the_datamodule_with_fewer_rows(tmp_path):
    module, dm = _module(tmp_path, "data.packing=true", "data.max_length=512")
    batch = next(iter(dm.train_dataloader()))
    assert "position_ids" in batch and batch["input_ids"].shape[0] < 8
    module.train()
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=dm)
    assert torch.isfinite(torch.tensor(float(trainer.callback_metrics["train/loss"])))


class _IgnoresPositions(torch.nn.Module):
    """A model whose attention mask ignores position ids: packed examples see each other."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, position_ids=None, **kw):
        return self.model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kw)


def test_packing_leak_is_zero_for_the_tiny_llama_and_large_when_attention_crosses_examples(tmp_path):
    from lat.models.packing import LEAK_TOLERANCE, packing_leak

    module, _ = _module(tmp_path)
    vocab = module.model.config.vocab_size
    assert packing_leak(module.model, vocab) < 1e-5
    assert packing_leak(_IgnoresPositions(module.model), vocab) > LEAK_TOLERANCE


def test_packed_run_stops_on_a_leaking_model_or_kernel_before_training(tmp_path, monkeypatch):
    import lat.models.packing as packing
    from lat.core.errors import UserError
    from lat.workflows.train import train

    cfg = load_config([*SMOKE, f"run.root={tmp_path}", "data.packing=true", "model.attn_implementation=flash_attention_2"])
    with pytest.raises(UserError, match=r"data\.packing: model\.attn_implementation=flash_attention_2 attends across"):
        train(cfg)
    monkeypatch.setattr(packing, "packing_leak", lambda model, vocab: 0.5)
    with pytest.raises(UserError, match=r"data\.packing: .* lets packed examples attend to each other \(logits differ by 50\.0%"):
        train(load_config([*SMOKE, f"run.root={tmp_path}", "data.packing=true"]))
    assert not any(tmp_path.iterdir())  # no run folder left behind


def test_compile_without_decoder_layers_is_a_clear_error():
    from lat.core.errors import UserError
    from lat.models.loading import compile_layers

    with pytest.raises(UserError, match=r"train\.compile: no decoder layers"):
        compile_layers(torch.nn.Sequential(torch.nn.Linear(2, 2)))


@pytest.mark.slow  # inductor compiles the tiny model's layer for ~1-2 min on 2 CPU cores
def test_compiled_layers_give_the_same_logits_with_and_without_adapters(tmp_path):
    from lat.models.loading import compile_layers

    module, dm = _module(tmp_path)
    batch = collate([dm.train_set[i] for i in range(4)], dm.pad_id)
    with torch.no_grad():
        eager = module._logits(module.model, batch, None), module._reference_logits(batch, None)
        assert compile_layers(module.model) == module.model.config.num_hidden_layers
        compiled = module._logits(module.model, batch, None), module._reference_logits(batch, None)
    for e, c in zip(eager, compiled):
        assert torch.allclose(e, c, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(*compiled)  # the adapter switch still reaches the compiled layers


def test_lat_train_with_packing_passes_the_check_and_trains(tmp_path):
    from lat.workflows.train import train

    result = train(load_config([*SMOKE, f"run.root={tmp_path}", "data.packing=true", "eval.during_training=false"]))
    assert result.metrics["global_step"] > 0 and (result.run_dir / "adapter").is_dir()
