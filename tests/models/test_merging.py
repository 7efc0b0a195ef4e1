"""LoRA adapters merged for generation: the merged model computes what ``merge_and_unload`` gives,
and leaving the block restores every base weight bit for bit (also after an error)."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model

from lat.config import ModelConfig
from lat.data.tasks import Example
from lat.evaluation.generate import GenerationSettings, generate, prompt_ids
from lat.models.loading import load_model_and_tokenizer
from lat.models.merging import mergeable_layers, merged_lora


def _peft(dtype=torch.float32):
    model, tok = load_model_and_tokenizer(ModelConfig(name_or_path="tiny"), seed=5)
    peft = get_peft_model(model.to(dtype), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.1))
    torch.manual_seed(2)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_" in name:
                p.normal_(0.0, 0.3)
    return peft.eval(), tok


def _base_weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


IDS = torch.tensor([[1, 5, 9, 3, 7, 2, 8, 4]])


def test_merged_model_is_merge_and_unload_and_the_base_comes_back_bit_for_bit():
    model, _ = _peft()
    before, unmerged = _base_weights(model), _logits(model, IDS)
    expected = _logits(copy.deepcopy(model).merge_and_unload(), IDS)
    with merged_lora(model) as n:
        merged = _logits(model, IDS)
    assert n == len(mergeable_layers(model)) == sum(1 for m in model.modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")) > 0
    assert torch.equal(merged, expected)
    torch.testing.assert_close(merged, unmerged, rtol=1e-4, atol=1e-4)
    after = _base_weights(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(getattr(m, "merged", False) for m in model.modules())
    assert torch.equal(_logits(model, IDS), unmerged)


def test_an_error_inside_still_restores_the_base():
    model, _ = _peft()
    before = _base_weights(model)
    with pytest.raises(RuntimeError, match="inside"):
        with merged_lora(model):
            raise RuntimeError("inside")
    after = _base_weights(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(getattr(m, "merged", False) for m in model.modules())


def test_nothing_is_merged_with_adapters_disabled_in_training_mode_or_across_dtypes():
    model, _ = _peft()
    with model.disable_adapter(), merged_lora(model) as n:
        assert n == 0
    model.train()
    with merged_lora(model) as n:  # LoRA dropout is in effect
        assert n == 0
    model.eval()
    with merged_lora(model, enabled=False) as n:
        assert n == 0
    bf16, _ = _peft(torch.bfloat16)
    for m in bf16.modules():  # peft keeps the adapters in fp32 on a bf16 base
        if hasattr(m, "lora_A") and "default" in m.lora_A:
            m.lora_A["default"].float()
            m.lora_B["default"].float()
    with merged_lora(bf16) as n:  # an fp32 delta added to bf16 weights would be rounded away
        assert n == 0


def test_generation_merges_by_default_and_leaves_the_model_as_it_was():
    model, tok = _peft()
    prompts = [prompt_ids(tok, Example(p, "")) for p in ("hello there", "a longer prompt with more words", "x")]
    before = _base_weights(model)
    merged = generate(model, tok, prompts, GenerationSettings(max_new_tokens=8, batch_size=2))
    reference = copy.deepcopy(model).merge_and_unload()
    expected = generate(reference, tok, prompts, GenerationSettings(max_new_tokens=8, batch_size=2))
    assert [g.token_ids for g in merged] == [g.token_ids for g in expected]
    after = _base_weights(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    unmerged = generate(model, tok, prompts, GenerationSettings(max_new_tokens=8, batch_size=2, merge_lora=False))
    assert [g.token_ids for g in unmerged] == [g.token_ids for g in merged]  # no near tie in this tiny model
