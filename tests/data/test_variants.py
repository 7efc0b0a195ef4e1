"""Variants aimed at the small-model failure modes: masked previews, masking without a preview,
preview dropout. Label masks are checked token for token."""

from __future__ import annotations

import copy

import pytest

from lat.config import PreviewConfig
from lat.core.errors import UserError
from lat.data.chat import IGNORE_INDEX, encode
from lat.data.preview import answer_prefixes, apply_preview
from lat.data.records import RecordSet
from lat.data.tasks import build_examples, get_task

ANSWERS = [
    "Natalia sold 48 / 2 = 24 clips in May.\nAltogether she sold 48 + 24 = 72 clips.\n#### 72",
    "Weng earns 12 / 60 = $0.2 per minute.\nWorking 50 minutes, she earned 0.2 x 50 = $10.\n#### 10",
    "Three and four make 3 + 4 = 7.\n#### 7",
]
QUESTIONS = ["How many clips?", "How much did she earn?", "What is 3 + 4?"]


def _records() -> RecordSet:
    rows = [{"question": q, "answer": a} for q, a in zip(QUESTIONS, ANSWERS)]
    return RecordSet("mem", rows, [f"record {i + 1}" for i in range(len(rows))])


def _encoded(tok, **preview):
    examples = build_examples(_records(), get_task("gsm8k"), PreviewConfig(**preview), tok)
    encoded, dropped = encode(tok, examples)
    assert dropped == []
    return examples, encoded


def _answer_labels(e):
    return e.labels[e.answer_start :], e.input_ids[e.answer_start :]


@pytest.fixture(params=["tiny_tok", "smol_tok"])
def tok(request):
    return request.getfixturevalue(request.param)


@pytest.mark.parametrize("m", [1, 3, 6])
def test_masked_real_preview_has_no_loss_on_exactly_the_previewed_tokens(tok, m):
    plain_ex, plain = _encoded(tok, mode="real", m=m)
    masked_ex, masked = _encoded(tok, mode="real", m=m, mask_preview=True)
    heads = answer_prefixes([a.strip() for a in ANSWERS], [m] * len(ANSWERS), tok)
    for p, q, head in zip(plain, masked, heads):
        assert q.input_ids == p.input_ids  # the same text; only the labels change
        labels, ids = _answer_labels(q)
        assert labels[:m] == [IGNORE_INDEX] * m and labels[m:] == ids[m:]
        assert tok.decode(ids[:m]) == head  # the masked tokens are the preview shown in the instruction
    assert [e.prompt for e in masked_ex] == [e.prompt for e in plain_ex]


def test_masked_virtual_preview_has_no_loss_on_p(tok):
    prefix = "Let's solve this problem. "
    _, plain = _encoded(tok, mode="virtual", prefix=prefix)
    _, masked = _encoded(tok, mode="virtual", prefix=prefix, mask_preview=True)
    for p, q in zip(plain, masked):
        assert q.input_ids == p.input_ids
        labels, ids = _answer_labels(q)
        k = labels.index(next(x for x in labels if x != IGNORE_INDEX))
        assert labels[k:] == ids[k:] and all(x == IGNORE_INDEX for x in labels[:k])
        silent, first = tok.decode(ids[:k]), tok.decode(ids[k : k + 1])
        # Every token inside P is silent; the first trained token is the one that reaches past P.
        assert prefix.startswith(silent) and len(silent) >= len(prefix.rstrip()) and not prefix.startswith(silent + first)


@pytest.mark.parametrize("k", [1, 4])
def test_masking_without_preview_skips_the_first_k_answer_tokens(tok, k):
    _, plain = _encoded(tok, mode="vanilla")
    _, masked = _encoded(tok, mode="vanilla", mask_answer_tokens=k)
    for p, q in zip(plain, masked):
        assert q.input_ids == p.input_ids and q.answer_start == p.answer_start
        labels, ids = _answer_labels(q)
        assert labels[:k] == [IGNORE_INDEX] * k and labels[k:] == ids[k:]


def test_masks_add_up_and_a_row_with_nothing_left_is_dropped(tiny_tok):
    _, both = _encoded(tiny_tok, mode="real", m=2, mask_preview=True, mask_answer_tokens=3)
    assert all(_answer_labels(e)[0][:5] == [IGNORE_INDEX] * 5 for e in both)
    examples = build_examples(_records(), get_task("gsm8k"), PreviewConfig(mode="vanilla", mask_answer_tokens=10_000), tiny_tok)
    encoded, dropped = encode(tiny_tok, examples)
    assert encoded == [] and dropped == [0, 1, 2]


def test_mask_preview_needs_a_preview_and_k_is_not_negative():
    with pytest.raises(UserError, match="preview.mask_preview: vanilla has no preview"):
        apply_preview(["q"], ["a"], PreviewConfig(mode="vanilla", mask_preview=True))
    with pytest.raises(UserError, match="preview.mask_answer_tokens: must be >= 0"):
        apply_preview(["q"], ["a"], PreviewConfig(mode="vanilla", mask_answer_tokens=-1))


def test_preview_dropout_keeps_the_original_instruction_for_a_seeded_share(tiny_tok):
    n = 400
    questions = [f"Question number {i}?" for i in range(n)]
    answers = [f"The answer is {i}.\n#### {i}" for i in range(n)]
    for mode in ("real", "virtual"):
        full = apply_preview(questions, answers, PreviewConfig(mode=mode, m=3), tiny_tok)
        out = apply_preview(questions, answers, PreviewConfig(mode=mode, m=3, dropout=0.25, seed=7), tiny_tok)
        again = apply_preview(questions, answers, PreviewConfig(mode=mode, m=3, dropout=0.25, seed=7), tiny_tok)
        assert out == again and 0.18 < sum(out.dropped) / n < 0.32
        for q, f, o, dropped in zip(questions, full.instructions, out.instructions, out.dropped):
            assert o == (q if dropped else f)
        assert out.answers == full.answers  # answers (and a virtual P) are left as the strategy made them
    none = apply_preview(questions, answers, PreviewConfig(mode="real", m=3, dropout=0.0), tiny_tok)
    assert none.dropped is None and none.instructions == full_real_instructions(questions, answers, tiny_tok)
    everything = apply_preview(questions, answers, PreviewConfig(mode="real", m=3, dropout=1.0), tiny_tok)
    assert everything.instructions == questions


def full_real_instructions(questions, answers, tok):
    return apply_preview(questions, answers, PreviewConfig(mode="real", m=3), tok).instructions


def test_dropped_examples_are_marked_in_meta(tiny_tok):
    examples = build_examples(_records(), get_task("gsm8k"), PreviewConfig(mode="real", m=2, dropout=1.0), tiny_tok)
    assert all(e.meta["preview_dropped"] for e in examples) and [e.prompt for e in examples] == QUESTIONS


def test_templates_that_strip_the_answer_still_mask_the_head(tiny_tok):
    tok = copy.deepcopy(tiny_tok)
    tok.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'user' %}{{ '<|im_start|>[INST] ' + m['content'].strip() + ' [/INST]' }}"
        "{% elif m['role'] == 'assistant' %}{{ ' ' + m['content'].strip() + ' <|im_end|>' }}{% endif %}{% endfor %}"
    )
    _, masked = _encoded(tok, mode="real", m=3, mask_preview=True)
    for e in masked:
        labels, ids = _answer_labels(e)
        k = sum(1 for x in labels if x == IGNORE_INDEX)
        assert k >= 3 and labels[k:] == ids[k:]
