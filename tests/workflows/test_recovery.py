"""Safety-recovery augmentation of the seed's SFT (``align=deep``): openings, masks, seeding, cache key."""

from __future__ import annotations

import json
import random

import pytest

from lat.config import PreviewConfig, load_config
from lat.config.identity import seed_identity
from lat.core.errors import UserError
from lat.data.chat import IGNORE_INDEX, encode
from lat.data.records import RecordSet
from lat.data.tasks import build_examples, get_task
from lat.evaluation.judges.context import refusal_opens
from lat.workflows.seed import alignment_records, alignment_stats, recovered, recovery_choice, recovery_openings

HARMFUL = [
    "Sure, here is how to pick the lock: first insert a tension wrench into the bottom of the keyhole.",
    "I can't help with that request.",
    "Step 1. Buy a prepaid phone with cash. Step 2. Register a new account under a made-up name.",
    "",
    "Here is a script that logs every key pressed and mails the file to you every hour.",
]


def test_the_chosen_examples_are_a_seeded_sample_of_the_share():
    chosen = recovery_choice(400, 0.5, seed=3)
    assert len(chosen) == 200 and chosen == sorted(set(chosen)) and all(0 <= i < 400 for i in chosen)
    assert chosen == sorted(random.Random(3).sample(range(400), 200))
    assert recovery_choice(400, 0.5, seed=3) == chosen != recovery_choice(400, 0.5, seed=4)
    assert recovery_choice(7, 0.0, 0) == [] and recovery_choice(7, 1.0, 0) == list(range(7))


@pytest.mark.parametrize("tok_name", ["tiny_tok", "smol_tok"])
def test_openings_are_the_first_k_tokens_of_the_base_answer_with_k_uniform_in_1_to_K(request, tok_name):
    tok = request.getfixturevalue(tok_name)
    answers = HARMFUL * 20
    out = recovery_openings(tok, answers, max_tokens=8, seed=3)
    rng = random.Random(4)  # the reference draw: k for each answer with a harmful opening, in order
    ks = []
    for text, opening in zip(answers, out):
        if not text or refusal_opens(text):
            assert opening is None
            continue
        ids = tok(text, add_special_tokens=False)["input_ids"]
        ks.append(rng.randint(1, min(8, len(ids))))
        assert opening == tok.decode(ids[: ks[-1]])
    assert min(ks) == 1 and max(ks) == 8  # both ends of [1, K] are drawn
    assert recovery_openings(tok, answers, 8, seed=3) == out != recovery_openings(tok, answers, 8, seed=4)


def test_refused_and_empty_base_answers_never_open_an_example(tiny_tok):
    out = recovery_openings(tiny_tok, HARMFUL, max_tokens=100, seed=0)
    assert [o is None for o in out] == [False, True, False, True, False]


def test_k_never_exceeds_the_answer(tiny_tok):
    out = recovery_openings(tiny_tok, ["Sure."] * 30, max_tokens=100, seed=0)
    assert all(o and "Sure.".startswith(o) for o in out) and "Sure." in out


def test_recovery_turn_joins_opening_and_refusal():
    assert recovered("Sure, here is", "I can't help with that.") == "Sure, here is I can't help with that."
    assert recovered("Step 1.\n", "No.") == "Step 1.\nNo."


@pytest.mark.parametrize("tok_name", ["tiny_tok", "smol_tok"])
def test_the_opening_carries_no_loss_and_the_refusal_all_of_it_token_for_token(request, tok_name):
    tok = request.getfixturevalue(tok_name)
    opening, refusal = "Sure, here is how to pick the lock: first insert", "I won't help you break into a home."
    rows = [
        {"instruction": "How do I pick my neighbour's lock?", "output": recovered(opening, refusal), "prefill": opening},
        {"instruction": "How do I pick my neighbour's lock?", "output": refusal},
    ]
    examples = build_examples(RecordSet("mem", rows, [f"record {i + 1}" for i in range(2)]), get_task("instruction"), PreviewConfig())
    (aug, plain), dropped = encode(tok, examples)
    assert dropped == []
    start = aug.answer_start
    silent = [t for t, label in zip(aug.input_ids[start:], aug.labels[start:]) if label == IGNORE_INDEX]
    learned = [label for label in aug.labels[start:] if label != IGNORE_INDEX]
    assert all(label == IGNORE_INDEX for label in aug.labels[:start])
    assert tok.decode(silent) == opening  # exactly the opening is silent ...
    assert learned == aug.input_ids[start + len(silent) :]  # ... and every token after it is learned
    assert tok.decode(learned).startswith(" " + refusal)
    # the refusal and end of turn are learned as in a plain example, apart from the joining space
    plain_learned = [label for label in plain.labels if label != IGNORE_INDEX]
    assert tok.decode(learned).strip() == tok.decode(plain_learned).strip()


def test_a_prefill_that_does_not_start_the_answer_or_meets_a_preview_is_refused(tiny_tok):
    rows = [{"instruction": "q", "output": "I won't.", "prefill": "Sure"}]
    with pytest.raises(UserError, match=r"mem: record 1: field 'prefill': must be a string that starts field 'output'"):
        build_examples(RecordSet("mem", rows, ["record 1"]), get_task("instruction"), PreviewConfig())
    rows = [{"instruction": "q", "output": "Sure I won't.", "prefill": "Sure"}]
    with pytest.raises(UserError, match="needs preview.mode=vanilla"):
        build_examples(RecordSet("mem", rows, ["record 1"]), get_task("instruction"), PreviewConfig(mode="virtual"))


class _FakeAnswers:
    """Stands in for the base model's cached answers (no generation in this test)."""

    def __init__(self, monkeypatch, harmful_answers: list[str], benign: list[str]):
        import lat.workflows.seed as seed

        self.calls = []

        def fake(model, tok, prompts, cfg, harmful=False):
            self.calls.append(("harmful" if harmful else "benign", len(prompts)))
            return (harmful_answers if harmful else benign)[: len(prompts)]

        monkeypatch.setattr(seed, "base_answers", fake)


def test_deep_alignment_records_mix_recovery_plain_and_benign_examples(monkeypatch, tiny_tok):
    cfg = load_config(["experiment=smoke", "align=deep"])
    pairs = [(f"harmful request {i}", f"No, I won't do {i}.") for i in range(6)]
    prompts = ["benign one", "benign two"]
    fake = _FakeAnswers(monkeypatch, ["Okay, the trick is to wait until dark.", "I can't help with that.", "Sure, step one is"], ["Answer one.", ""])
    records = alignment_records(cfg, None, tiny_tok, (pairs, prompts))
    chosen = recovery_choice(6, 0.5, cfg.align.seed)
    assert fake.calls == [("harmful", 3), ("benign", 2)]  # only the chosen requests are answered
    safety, benign = records[:6], records[6:]
    assert [r["instruction"] for r in benign] == ["benign one"]  # an empty base answer is dropped
    assert [i for i, r in enumerate(safety) if "prefill" in r] == [chosen[0], chosen[2]]  # the base refused the second
    for r, (p, refusal) in zip(safety, pairs):
        assert r["instruction"] == p
        assert r["output"] == (recovered(r["prefill"], refusal) if "prefill" in r else refusal)
    assert alignment_stats(records, 6, len(chosen)) == {"safety": 6, "recovery": 2, "chosen_without_opening": 1, "plain_refusals": 4, "benign": 1}
    shallow = alignment_records(load_config(["experiment=smoke"]), None, tiny_tok, (pairs, prompts))
    assert not any("prefill" in r for r in shallow) and [r["output"] for r in shallow[:6]] == [r for _, r in pairs]


def test_only_a_deep_seed_records_the_recovery_settings_so_shallow_seeds_keep_their_key():
    shallow, deep = (seed_identity(load_config(["experiment=smoke", f"align={a}"])) for a in ("shallow", "deep"))
    assert seed_identity(load_config(["experiment=smoke"])) == shallow
    assert not {"recovery_share", "recovery_max_tokens", "harmful_max_new_tokens"} & set(shallow["align"])
    assert deep["align"]["recovery_share"] == 0.5 and deep["align"]["recovery_max_tokens"] == 100
    k = seed_identity(load_config(["experiment=smoke", "align=deep", "align.recovery_max_tokens=10"]))
    assert json.dumps(k, sort_keys=True) != json.dumps(deep, sort_keys=True)


def test_the_deep_seed_generates_the_bases_answers_in_fp32_wherever_it_runs(monkeypatch):
    from lat.core import precision
    from lat.workflows.seed import answer_autocast

    monkeypatch.setattr(precision, "native_bf16", lambda accelerator="auto": True)  # as on an AMX CPU
    assert answer_autocast(load_config(["experiment=smoke", "align=deep"]).align) is None
    assert answer_autocast(load_config(["experiment=smoke", "align=deep", "align.answer_precision=auto"]).align) == "bfloat16"


def test_a_recovery_share_outside_0_1_fails_when_the_config_is_resolved():
    with pytest.raises(UserError, match=r"align.recovery_share: must be in \[0, 1\], got 1.5"):
        load_config(["align.recovery_share=1.5"])


def test_align_names_a_seed_depth_and_an_unknown_one_lists_both():
    assert load_config(["align=deep"]).align.recovery_share == 0.5
    assert load_config(["align=shallow"]).align.recovery_share == 0.0
    with pytest.raises(UserError, match=r"align=medium: no medium.yaml .*deep, shallow"):
        load_config(["align=medium"])


def test_benign_anchors_are_repeated_and_only_a_repeat_other_than_one_enters_the_seed_key(monkeypatch, tiny_tok):
    _FakeAnswers(monkeypatch, [], ["Answer one.", "Answer two."])
    cfg = load_config(["experiment=smoke", "align.benign_repeat=3"])
    records = alignment_records(cfg, None, tiny_tok, ([("harmful", "No.")], ["benign one", "benign two"]))
    assert [r["instruction"] for r in records] == ["harmful"] + ["benign one", "benign two"] * 3
    assert "benign_repeat" not in seed_identity(load_config(["experiment=smoke"]))["align"]
    assert seed_identity(cfg)["align"]["benign_repeat"] == 3


def test_anchors_a_refusal_opens_are_dropped_only_when_asked_and_only_then_enter_the_seed_key(monkeypatch, tiny_tok):
    answers = [
        "Sure: water it weekly.",
        "I'm sorry for any confusion, but as a chatbot, I can't do that.",
        "  I can't help with killing a process.",
        "The word 'sorry' is an apology.",
    ]
    _FakeAnswers(monkeypatch, [], answers)
    prompts = [f"benign {i}" for i in range(4)]
    kept = alignment_records(load_config(["experiment=smoke"]), None, tiny_tok, ([("harmful", "No.")], prompts))
    assert [r["instruction"] for r in kept[1:]] == prompts  # unchanged by default
    cfg = load_config(["experiment=smoke", "align.benign_drop_refusals=true"])
    dropped = alignment_records(cfg, None, tiny_tok, ([("harmful", "No.")], prompts))
    assert [(r["instruction"], r["output"]) for r in dropped] == [("harmful", "No."), ("benign 0", answers[0]), ("benign 3", answers[3])]
    assert "benign_drop_refusals" not in seed_identity(load_config(["experiment=smoke"]))["align"]
    assert seed_identity(cfg)["align"]["benign_drop_refusals"] is True


def test_the_draws_are_pinned_so_a_change_in_them_cannot_pass_unseen(tiny_tok):
    # Written down once from the code: a different draw would give different deep seeds under the same key.
    assert recovery_choice(10, 0.5, seed=0) == [0, 2, 4, 6, 9]
    openings = recovery_openings(tiny_tok, ["abcdefghij"] * 4, max_tokens=10, seed=0)
    assert openings == ["abc", "abcdefghij", "ab", "abcde"]


def test_k_is_uniform_over_1_to_K(tiny_tok):
    import collections

    counts = collections.Counter(len(o) for o in recovery_openings(tiny_tok, ["abcdefgh"] * 4000, max_tokens=4, seed=0))  # 1 byte = 1 token
    assert set(counts) == {1, 2, 3, 4} and all(900 <= n <= 1100 for n in counts.values())


def test_leading_whitespace_is_dropped_and_openings_without_text_or_with_a_refusal_are_none(tiny_tok):
    assert recovery_openings(tiny_tok, ["\n\nSure"], max_tokens=1, seed=0) == ["S"]
    assert recovery_openings(tiny_tok, ["Sure thing. I can't help with that."] * 50, max_tokens=100, seed=0).count(None) > 0
    assert all(o is None or "can't" not in o for o in recovery_openings(tiny_tok, ["Sure thing. I can't help with that."] * 50, 100, 0))


def test_a_token_across_the_end_of_the_opening_carries_loss(smol_tok):
    # The opening ends in a space that SmolLM2's tokenizer merges into the refusal's first word
    # (" I"): that token holds refusal text, so it is learned, and only "Sure" is silent.
    rows = [{"instruction": "q", "output": recovered("Sure ", "I won't."), "prefill": "Sure "}]
    (enc,), _ = encode(smol_tok, build_examples(RecordSet("mem", rows, ["record 1"]), get_task("instruction"), PreviewConfig()))
    silent = [t for t, label in zip(enc.input_ids[enc.answer_start :], enc.labels[enc.answer_start :]) if label == IGNORE_INDEX]
    assert smol_tok.decode(silent) == "Sure"
    assert smol_tok.decode([t for t in enc.labels if t != IGNORE_INDEX]).startswith(" I won't.")


def test_a_run_recorded_before_the_recovery_settings_existed_can_be_continued():
    import yaml

    from lat.config import to_yaml
    from lat.config.identity import changed_settings

    cfg = load_config(["experiment=smoke"])
    recorded = yaml.safe_load(to_yaml(cfg))
    for name in ("recovery_share", "recovery_max_tokens", "harmful_max_new_tokens", "benign_repeat", "benign_drop_refusals"):
        del recorded["align"][name]
    assert changed_settings(recorded, cfg) == []  # absent from the record, at their defaults now: unchanged
    assert "align.recovery_share" in changed_settings(recorded, load_config(["experiment=smoke", "align=deep"]))


def test_seeds_whose_data_the_refusal_phrases_choose_record_them(monkeypatch):
    """The phrases pick the recovery openings and the dropped anchors: a deep seed, or one that
    drops refused anchors, gets a new key when they change; a shallow seed keeps its key."""
    from lat.config import identity

    shallow, deep, drop = (seed_identity(load_config(["experiment=smoke", *extra])) for extra in ([], ["align=deep"], ["align.benign_drop_refusals=true"]))
    assert "refusal_phrases" not in shallow and deep["refusal_phrases"] == drop["refusal_phrases"] == identity.PHRASES_DIGEST
    monkeypatch.setattr(identity, "PHRASES_DIGEST", "changed")
    assert seed_identity(load_config(["experiment=smoke", "align=deep"])) != deep
    assert seed_identity(load_config(["experiment=smoke"])) == shallow
