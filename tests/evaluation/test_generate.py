"""Generation: batched == unbatched under greedy, exact prefill, stop at EOS, left cut of long prompts."""

from __future__ import annotations

import pytest
import torch

from lat.config import ModelConfig
from lat.data.tasks import Example
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
