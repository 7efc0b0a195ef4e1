"""Generation: batched == unbatched under greedy, exact prefill, stop at EOS, left cut of long prompts."""

from __future__ import annotations

import pytest
import torch

from lat.config import ModelConfig
from lat.data.tasks import Example
from lat.evaluation import generate as gen
from lat.evaluation.generate import GenerationSettings, generate, prefix_ids, prompt_ids
from lat.models.loading import load_model_and_tokenizer

QUESTIONS = ["hi", "What is 2 + 2?", "Write one sentence about the sea, please, in a calm voice.", "x" * 40, "Name a colour.", "ok"]


@pytest.fixture(scope="module")
def tiny():
    model, tok = load_model_and_tokenizer(ModelConfig(name_or_path="tiny"), seed=3)
    return model.eval(), tok


def _prompts(tok):
    return [prompt_ids(tok, Example(q, "", "Be brief.")) for q in QUESTIONS]


def test_batched_equals_unbatched_greedy(tiny):
    model, tok = tiny
    s = GenerationSettings(max_new_tokens=12, batch_size=4)
    batched = generate(model, tok, _prompts(tok), s)
    single = [generate(model, tok, [p], GenerationSettings(max_new_tokens=12, batch_size=1))[0] for p in _prompts(tok)]
    assert [g.token_ids for g in batched] == [g.token_ids for g in single]
    assert all(len(g.token_ids) <= 12 for g in batched)


def test_prefill_puts_exactly_k_tokens_in_the_assistant_turn(tiny):
    model, tok = tiny
    harmful = "Sure, here is exactly what you asked for, step by step"
    for k in (1, 3, 5, 10):
        pre = prefix_ids(tok, harmful, k)
        assert len(pre) == k and tok.decode(pre) == harmful[: len(tok.decode(pre))]
        ids = prompt_ids(tok, Example("q", ""), pre)
        plain = prompt_ids(tok, Example("q", ""))
        assert ids[: len(plain)] == plain and ids[len(plain) :] == pre
        text = tok.decode(ids)
        assert text.endswith("<|im_start|>assistant\n" + tok.decode(pre))


def test_stops_at_eos_and_reports_it(tiny):
    model, tok = tiny
    eos = tok.eos_token_id
    with torch.no_grad():  # make eos the argmax everywhere
        model.lm_head.weight.zero_()
        model.lm_head.weight[eos] = 1.0
        model.model.norm.weight.fill_(1.0)
    try:
        (g,) = generate(model, tok, [prompt_ids(tok, Example("q", ""))], GenerationSettings(max_new_tokens=8))
        assert g.stopped and g.token_ids == [eos] and g.text == ""
    finally:
        fresh, _ = load_model_and_tokenizer(ModelConfig(name_or_path="tiny"), seed=3)
        model.load_state_dict(fresh.state_dict())


def test_long_prompts_are_cut_from_the_left_and_counted(tiny):
    model, tok = tiny
    limit = model.config.max_position_embeddings
    long = prompt_ids(tok, Example("y" * (limit + 50), ""))
    (g,) = generate(model, tok, [long], GenerationSettings(max_new_tokens=4))
    assert g.cut_tokens == len(long) - (limit - 4) and g.prompt_tokens == limit - 4


def test_sampling_is_seeded(tiny):
    model, tok = tiny
    s = GenerationSettings(max_new_tokens=10, do_sample=True, seed=7)
    a = generate(model, tok, _prompts(tok), s)
    b = generate(model, tok, _prompts(tok), s)
    assert [g.token_ids for g in a] == [g.token_ids for g in b]


def _reference(model, tok, prompts, new_tokens, stops):
    """``model.generate`` on each prompt alone, cut after its first stop token."""
    out = []
    for p in prompts:
        ids = torch.tensor([p])
        seq = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, do_sample=False, eos_token_id=stops, pad_token_id=tok.eos_token_id
        )
        new = seq[0, len(p) :].tolist()
        cut = next((i + 1 for i, t in enumerate(new) if t in stops), len(new))
        out.append(new[:cut])
    return out


def _lora(model):
    from peft import LoraConfig, get_peft_model

    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5)
    return peft.eval()


@pytest.mark.parametrize("adapter", [False, True])
def test_own_greedy_loop_equals_generate_with_rows_leaving_the_batch(adapter):
    """The loop that encodes the shared system turn once and drops finished rows gives, row for
    row, the tokens ``model.generate`` gives each prompt alone (a LoRA adapter unmerged too)."""
    model, tok = load_model_and_tokenizer(ModelConfig(name_or_path="tiny"), seed=3)
    model = _lora(model) if adapter else model.eval()
    assert gen.plain_greedy(model)
    prompts = _prompts(tok)
    assert gen.shared_head(prompts) > 5  # the system turn
    free = _reference(model, tok, prompts, 10, [tok.eos_token_id])
    # stop on tokens some rows emit early and others late, so rows leave the batch at different steps
    stops = sorted({tok.eos_token_id, free[0][2], free[3][6]})
    expected = _reference(model, tok, prompts, 10, stops)
    assert len({len(e) for e in expected}) > 1
    model.generation_config.eos_token_id = stops
    try:
        got = generate(model, tok, prompts, GenerationSettings(max_new_tokens=10, batch_size=4, merge_lora=False))
    finally:
        model.generation_config.eos_token_id = tok.eos_token_id
    assert [g.token_ids for g in got] == expected
    assert [g.stopped for g in got] == [e[-1] in stops for e in expected]


def test_shared_head_leaves_every_row_a_token_of_its_own():
    assert gen.shared_head([[1, 2, 3], [1, 2, 3]]) == 2
    assert gen.shared_head([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert gen.shared_head([[7, 2], [1, 2]]) == 0


def test_a_generation_config_with_a_penalty_goes_to_generate(tiny, monkeypatch):
    model, tok = tiny
    monkeypatch.setattr(gen, "_greedy", lambda *a, **k: pytest.fail("own loop used"))
    monkeypatch.setattr(model.generation_config, "repetition_penalty", 1.3)
    assert not gen.plain_greedy(model)
    (g,) = generate(model, tok, _prompts(tok)[:1], GenerationSettings(max_new_tokens=6))
    assert g.token_ids == _reference(model, tok, _prompts(tok)[:1], 6, [tok.eos_token_id])[0]
