"""Preview strategies: exact semantics, token for token, against the reference (per-record) form."""

from __future__ import annotations

import json

import pytest

from lat.config import PreviewConfig
from lat.core.errors import UserError
from lat.data.preview import (
    STRATEGIES,
    _ByteLevelHeads,
    added_tokens_pattern,
    answer_prefixes,
    apply_preview,
    preview_records,
    reference_prefix,
)

C = " The answer begins with: "
P = "Let's solve this problem. "
NATALIA = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"
ODD_TEXTS = [
    "short",
    "  leading and trailing spaces  ",
    "a" * 700,
    "数学题：小明有 48 个苹果，吃了 3 个。" * 12,
    "\n\n\n   \t tabs and newlines\n\n",
    "<|im_end|> text that contains special-token strings <|im_start|>" * 4,
    "emoji 😀🧮 and accents café naïve " * 20,
    "word " * 300,
    "1234567890" * 40,
    "x",
    "abc é",
    "hi  é then ascii",
    "ab\u00a0cd and more words here",
    "It's 'll 're 've 'd 'm 't fine",
    "\x1c\x1d control\x0b\x0cchars\r\n",
    "Natalia sold 48 — 24 clips",
]


def _prefixes_agree(texts, m, tok):
    fast = answer_prefixes(texts, [m] * len(texts), tok)
    ref = [reference_prefix(t, m, tok) for t in texts]
    return [(t[:40], a, b) for t, a, b in zip(texts, fast, ref) if a != b]


def test_real_prefix_literal_smollm2(smol_tok):
    # SmolLM2 tokens of NATALIA: N | atal | ia | Ġsold | Ġ | 4 | 8 | / ...
    assert smol_tok.tokenize(NATALIA)[:6] == ["N", "atal", "ia", "Ġsold", "Ġ", "4"]
    out = apply_preview(["Q?"], [NATALIA], PreviewConfig(mode="real", m=6), smol_tok)
    assert out.instructions == ["Q?" + C + "Natalia sold 4"]
    assert out.answers == [NATALIA]
    assert out.m == [6]


@pytest.mark.parametrize("m", [1, 2, 3, 6, 8, 12, 16, 40])
def test_real_prefix_matches_reference_on_odd_texts(smol_tok, tiny_tok, m):
    for tok in (smol_tok, tiny_tok):
        assert _prefixes_agree(ODD_TEXTS, m, tok) == []


@pytest.mark.parametrize("m", [1, 6, 16])
def test_real_prefix_matches_reference_on_gsm8k_and_samsum(smol_tok, shared_datasets, m):
    gsm = [json.loads(line)["answer"] for line in open(shared_datasets / "gsm8k" / "test.jsonl")]
    sam = json.load(open(shared_datasets / "samsum" / "test.json"))
    for texts in (gsm, [r["summary"] for r in sam], [r["dialogue"] for r in sam[:200]]):
        assert _prefixes_agree(texts, m, smol_tok) == []


def test_byte_level_fast_path_applies_and_matches_on_random_texts(smol_tok, tiny_tok):
    import random

    assert _ByteLevelHeads.applies(smol_tok)
    rng = random.Random(0)
    alphabet = list("abcXYZ019 '.,-=<>|\t\n\x0b\x0c\r\x1c") + ["é", "\u00a0", "\u2003", "😀", "'s", "'ll", "<|im_end|>"]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(3000)]
    for m in (1, 3, 6):
        for tok in (smol_tok, tiny_tok):
            assert _prefixes_agree(texts, m, tok) == []
    heads = _ByteLevelHeads(smol_tok, added_tokens_pattern(smol_tok))
    assert heads.head(NATALIA, 6) == "Natalia sold 4"
    assert heads.head("café", 1) is None  # decided by the batched tokenizer path instead


def test_m_longer_than_answer_previews_whole_answer(smol_tok):
    answers = ["Yes.", "It is 42.", "Sure, here you go"]
    out = apply_preview(["a", "b", "c"], answers, PreviewConfig(mode="real", m=500), smol_tok)
    assert out.instructions == [i + C + a for i, a in zip("abc", answers)]


def test_virtual_is_exact():
    out = apply_preview(["What is 2+2?"], ["4"], PreviewConfig(mode="virtual"), None)
    assert out.instructions == ["What is 2+2?" + C + P]
    assert out.answers == [P + "4"]
    custom = apply_preview(["I"], ["O"], PreviewConfig(mode="virtual", prefix="P!", connector="|"), None)
    assert (custom.instructions, custom.answers) == (["I|P!"], ["P!O"])


def test_vanilla_is_identity():
    out = apply_preview(["a", "b"], ["c", "d"], PreviewConfig(mode="vanilla"), None)
    assert (out.instructions, out.answers, out.m, out.prefixes) == (["a", "b"], ["c", "d"], None, None)


def test_real_range_draws_are_seeded_bounded_and_order_free(tiny_tok):
    ins = [f"question {i}" for i in range(60)]
    ans = [f"answer number {i} is a fairly long sentence with many words" for i in range(60)]
    cfg = PreviewConfig(mode="real_range", m_min=2, m_max=9, seed=3)
    a = apply_preview(ins, ans, cfg, tiny_tok)
    b = apply_preview(ins[::-1], ans[::-1], cfg, tiny_tok)
    assert set(a.m) <= set(range(2, 10)) and len(set(a.m)) > 3
    assert a.m == b.m[::-1]  # a draw belongs to the example, not to its position
    other = apply_preview(ins, ans, PreviewConfig(mode="real_range", m_min=2, m_max=9, seed=4), tiny_tok)
    assert other.m != a.m
    for i, m, text in zip(ins, a.m, a.instructions):
        assert text == i + C + reference_prefix(ans[ins.index(i)], m, tiny_tok)


def test_virtual_pool_draws_from_pool_seeded():
    pool = ["P1. ", "P2. ", "P3. "]
    cfg = PreviewConfig(mode="virtual_pool", prefix_pool=pool, seed=1)
    ins, ans = [f"q{i}" for i in range(40)], [f"a{i}" for i in range(40)]
    out = apply_preview(ins, ans, cfg, None)
    assert set(out.prefixes) == set(pool)
    for i, a, p, ni, na in zip(ins, ans, out.prefixes, out.instructions, out.answers):
        assert (ni, na) == (i + C + p, p + a)
    assert apply_preview(ins, ans, cfg, None).prefixes == out.prefixes


def test_preview_records_keeps_other_fields_and_order():
    recs = [{"id": 1, "question": "Q", "answer": "A", "extra": [1, 2]}]
    out = preview_records(recs, "question", "answer", PreviewConfig(mode="virtual"), None)
    assert out == [{"id": 1, "question": "Q" + C + P, "answer": P + "A", "extra": [1, 2]}]
    assert list(out[0]) == list(recs[0])
    assert recs[0]["question"] == "Q"  # input records are not mutated


@pytest.mark.parametrize(
    "cfg, needle",
    [
        (PreviewConfig(mode="real", m=0), "preview.m"),
        (PreviewConfig(mode="real", m=-3), "preview.m"),
        (PreviewConfig(mode="lookahead"), "unknown strategy 'lookahead'"),
        (PreviewConfig(mode="real_range", m_min=5, m_max=2), "m_min"),
        (PreviewConfig(mode="virtual_pool", prefix_pool=[]), "prefix_pool"),
    ],
)
def test_bad_parameters_fail_with_named_field(cfg, needle):
    with pytest.raises(UserError, match=needle):
        apply_preview(["q"], ["a"], cfg, None)


def test_real_needs_a_tokenizer():
    with pytest.raises(UserError, match="tokenizer"):
        apply_preview(["q"], ["a"], PreviewConfig(mode="real"), None)


def test_registry_lists_known_names_on_error():
    with pytest.raises(UserError) as e:
        apply_preview(["q"], ["a"], PreviewConfig(mode="nope"), None)
    for name in STRATEGIES:
        assert name in str(e.value)


class _SlowTokenizer:
    """A non-fast tokenizer: whitespace tokens, joined back with spaces."""

    is_fast = False

    def tokenize(self, text):
        return text.split()

    def convert_tokens_to_string(self, tokens):
        return " ".join(tokens)


def test_slow_tokenizers_use_the_reference_path():
    out = answer_prefixes(["one two three four", "a b"], [2, 5], _SlowTokenizer())
    assert out == ["one two", "a b"]


def test_adaptive_lengths_by_hand():
    from lat.data.preview import adaptive_lengths

    losses = [[3.0, 2.0, 0.5, 4.0], [0.1, 5.0], [2.0, 2.0, 2.0]]  # running minima: 3 2 .5 .5 | .1 .1 | 2 2 2
    assert adaptive_lengths(losses, budget=100, m_min=1, m_max=3) == ([3, 2, 3], 0.1)
    assert adaptive_lengths(losses, budget=6, m_min=1, m_max=3) == ([2, 1, 3], 2.0)
    assert adaptive_lengths(losses, budget=5, m_min=1, m_max=3) == ([1, 1, 1], 3.0)
    assert adaptive_lengths(losses, budget=1, m_min=1, m_max=3)[0] == [1, 1, 1]  # m_min wins over the budget


def test_adaptive_previews_the_given_lengths_and_needs_them(smol_tok):
    out = apply_preview(["Q?", "R?"], [NATALIA, NATALIA], PreviewConfig(mode="adaptive"), smol_tok, lengths=[1, 6])
    assert out.instructions == ["Q?" + C + "N", "R?" + C + "Natalia sold 4"] and out.m == [1, 6]
    with pytest.raises(UserError, match="adaptive"):
        apply_preview(["Q?"], [NATALIA], PreviewConfig(mode="adaptive"), smol_tok)
