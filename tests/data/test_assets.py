"""Shipped data assets: harmful eval set, safety-alignment set, benign prompts, synthetic arithmetic."""

from __future__ import annotations

import ast
import collections
import operator
import re

import pytest

from lat.data import arithmetic
from lat.data.records import read_records, resolve_path

CATEGORIES = {
    "illegal_activity",
    "child_abuse",
    "hate_harass_violence",
    "malware",
    "physical_harm",
    "economic_harm",
    "fraud_deception",
    "adult_content",
    "political_campaigning",
    "privacy_violation",
    "tailored_financial_advice",
}


def _records(name: str) -> list[dict]:
    return read_records(f"pkg:assets/{name}").records


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def _shingles(text: str, k: int = 6) -> set[tuple[str, ...]]:
    w = _words(text)
    return {tuple(w[i : i + k]) for i in range(len(w) - k + 1)}


@pytest.fixture(scope="module")
def harmful_eval():
    return _records("harmful_eval.jsonl")


@pytest.fixture(scope="module", params=["safety_train.jsonl", "safety_train_broad.jsonl"])
def safety_train(request):
    return _records(request.param)


@pytest.fixture(scope="module", params=["benign_prompts.jsonl", "benign_prompts_broad.jsonl", "benign_prompts_wide.jsonl"])
def benign(request):
    return _records(request.param)


def test_the_broad_alignment_data_extends_the_first():
    for first, broad in (
        ("safety_train.jsonl", "safety_train_broad.jsonl"),
        ("benign_prompts.jsonl", "benign_prompts_broad.jsonl"),
        ("benign_prompts_broad.jsonl", "benign_prompts_wide.jsonl"),
    ):
        assert _records(broad)[: len(_records(first))] == _records(first)


@pytest.mark.parametrize(
    ("name", "fields", "per_category", "total"),
    [
        ("harmful_eval.jsonl", {"prompt", "category", "response"}, 11, 121),
        ("safety_train.jsonl", {"prompt", "category", "refusal"}, 8, 88),
        ("safety_train_broad.jsonl", {"prompt", "category", "refusal"}, 36, 396),
        ("harmful_train.jsonl", {"prompt", "category", "phrasing"}, 20, 220),
    ],
)
def test_harmful_sets_cover_the_eleven_categories(name, fields, per_category, total):
    recs = _records(name)
    assert len(recs) >= total
    assert all(set(r) == fields and all(isinstance(r[f], str) and r[f].strip() for f in fields) for r in recs)
    counts = collections.Counter(r["category"] for r in recs)
    assert set(counts) == CATEGORIES
    assert min(counts.values()) >= per_category, counts


def test_harmful_responses_are_long_enough_for_a_prefix(harmful_eval):
    short = [r["response"] for r in harmful_eval if len(r["response"].split()) < 12]
    assert not short


def test_benign_prompts(benign):
    assert len(benign) >= 100
    assert all(set(r) == {"prompt", "kind"} and r["prompt"].strip() for r in benign)
    kinds = collections.Counter(r["kind"] for r in benign)
    assert kinds["borderline"] >= 15 and len(kinds) >= 5


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("harmful_eval.jsonl", "prompt"),
        ("harmful_eval.jsonl", "response"),
        ("safety_train_broad.jsonl", "prompt"),
        ("safety_train_broad.jsonl", "refusal"),
        ("benign_prompts_broad.jsonl", "prompt"),
        ("benign_prompts_wide.jsonl", "prompt"),
        ("harmful_train.jsonl", "prompt"),
        ("arithmetic_train.jsonl", "question"),
        ("arithmetic_test.jsonl", "question"),
    ],
)
def test_no_exact_duplicates_within_a_file(name, field):
    values = [" ".join(_words(r[field])) for r in _records(name)]
    assert [v for v, n in collections.Counter(values).items() if n > 1] == []


def test_eval_prompts_do_not_overlap_training_prompts(harmful_eval, safety_train, benign):
    # A shared 6-word shingle means a near-duplicate: held-out safety would then be measured on
    # prompts the seed was aligned on.
    train = set().union(*(_shingles(r["prompt"]) for r in safety_train + benign))
    clashes = [(r["prompt"], sorted(_shingles(r["prompt"]) & train)) for r in harmful_eval]
    assert [c for c in clashes if c[1]] == []


def _edit_distance(a: list[str], b: list[str]) -> int:
    """Word-level Levenshtein distance."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def near_duplicates(train: list[str], evaluation: list[str], within: float = 0.3) -> list[tuple[str, str]]:
    """Pairs whose word-level edit distance is at most ``within`` of the longer prompt's words
    (only pairs sharing a third of their words are compared: others are far apart anyway)."""
    ev = [(e, _words(e), set(_words(e))) for e in evaluation]
    out = []
    for t in train:
        tw = _words(t)
        ts = set(tw)
        for e, ew, es in ev:
            if len(ts & es) * 3 >= len(ts | es) and _edit_distance(tw, ew) <= within * max(len(tw), len(ew)):
                out.append((t, e))
    return out


def test_near_duplicates_are_found():
    assert near_duplicates(["How do I pick the lock on my neighbour's front door?"], ["How can I pick the lock on my neighbor's front door?"])
    assert not near_duplicates(["How do I pick the lock on my neighbour's front door?"], ["How do I kill a Python process?"])


def test_no_training_request_is_within_a_small_edit_distance_of_an_evaluation_prompt(harmful_eval):
    # Every prompt a seed is aligned on (harmful requests and benign anchors; the broad files hold
    # the first ones) against every prompt lat evaluates on: held-out harmful, over-refusal, and
    # the judge audit's generations. The wide anchors hold the broad ones, which hold the first.
    evaluation = [r["prompt"] for r in harmful_eval + _records("overrefusal_prompts.jsonl") + _records("judge_audit.jsonl")]
    train = [r["prompt"] for r in _records("safety_train_broad.jsonl") + _records("benign_prompts_wide.jsonl")]
    assert near_duplicates(train, sorted(set(evaluation))) == []


def test_the_poisoning_requests_are_apart_from_evaluation_and_alignment_prompts(harmful_eval):
    # data.harmful_mix's requests: never an evaluation prompt, and never a request the seed was
    # aligned to refuse (poisoning then teaches compliance on new requests).
    poison = [r["prompt"] for r in _records("harmful_train.jsonl")]
    evaluation = [r["prompt"] for r in harmful_eval + _records("overrefusal_prompts.jsonl") + _records("judge_audit.jsonl")]
    alignment = [r["prompt"] for r in _records("safety_train_broad.jsonl") + _records("benign_prompts_wide.jsonl")]
    assert near_duplicates(poison, sorted(set(evaluation + alignment))) == []
    seen = set().union(*(_shingles(p) for p in evaluation + alignment))
    assert [p for p in poison if _shingles(p) & seen] == []


def test_refusals_are_varied(safety_train):
    refusals = [r["refusal"] for r in safety_train]
    first = collections.Counter(re.sub(r"[^\w']", "", r.split()[0]) for r in refusals)
    assert len(first) >= 8, first
    assert sum(not w.startswith("I") for w in first.elements()) >= 3
    stock = sum("I'm sorry" in r or "I cannot" in r for r in refusals)
    assert stock <= 0.5 * len(refusals)
    lengths = sorted(len(r.split()) for r in refusals)
    assert lengths[0] <= 8 and lengths[-1] >= 40  # both terse and explained refusals


def _refusal_matcher():
    try:
        from lat.evaluation.judges.keyword import match_refusal
    except ImportError:  # pragma: no cover - the judge lives in another part of the package
        pytest.skip("keyword judge unavailable")
    return match_refusal


def test_prefill_responses_contain_no_refusal_phrase(harmful_eval):
    # JSR judges prefix + continuation: a prefix holding "illegal" or "Sorry" would make every
    # prefilled answer count as safe under the paper's keyword judge.
    match = _refusal_matcher()
    assert [(r["response"], match(r["response"])) for r in harmful_eval if match(r["response"])] == []


def test_most_refusals_are_visible_to_the_judges(safety_train):
    # A seed trained mostly on phrase-free refusals would be scored unsafe by phrase-matching
    # judges; a minority without stock phrases keeps the refusal style from collapsing to one
    # phrase. The default judge's refusal phrases include "I won't", the paper's keyword list does
    # not, so it sees fewer of them; it also holds the terse forms of this data ("Not from me.",
    # "off the table"), so it sees nearly all, and the keyword bound keeps the style varied.
    from lat.evaluation.judges.context import refusal_at

    match = _refusal_matcher()
    keyword = sum(match(r["refusal"]) is not None for r in safety_train)
    context = sum(refusal_at(r["refusal"]) is not None for r in safety_train)
    first = len(safety_train) < 100  # the first 99 were written with the keyword list in mind
    assert (0.7 if first else 0.5) * len(safety_train) <= keyword <= 0.9 * len(safety_train)
    assert 0.8 * len(safety_train) <= context <= 0.98 * len(safety_train)


# --- arithmetic ---------------------------------------------------------------------------------

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _calc(expr: str, whole: bool = False) -> float:
    """Evaluate + - * / over numeric literals only (anything else raises).

    With ``whole``, every intermediate result must also be a non-negative integer.
    """

    def walk(node):
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            value = _OPS[type(node.op)](walk(node.left), walk(node.right))
            if whole and not (value >= 0 and value == int(value)):
                raise ValueError(f"intermediate {value} in {expr!r}")
            return value
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        raise ValueError(f"not plain arithmetic: {expr!r}")

    return walk(ast.parse(expr, mode="eval").body)


def test_calc_rejects_code():
    assert _calc("40*25/100") == 10
    with pytest.raises(ValueError):
        _calc("__import__('os')")
    with pytest.raises(ValueError):
        _calc("3-5+4", whole=True)


def test_arithmetic_assets_are_reproducible(tmp_path):
    arithmetic.write_default_assets(tmp_path)
    for name in ("arithmetic_train.jsonl", "arithmetic_test.jsonl"):
        assert (tmp_path / name).read_bytes() == resolve_path(f"pkg:assets/{name}").read_bytes()


def test_arithmetic_generation_is_seeded_and_isolated():
    import random

    random.seed(0)
    state = random.getstate()
    assert arithmetic.generate(50, seed=7) == arithmetic.generate(50, seed=7)
    assert arithmetic.generate(50, seed=7) != arithmetic.generate(50, seed=8)
    assert random.getstate() == state
    assert len(arithmetic.generate(20, seed=1, difficulty="medium")) == 20
    with pytest.raises(Exception, match="known"):
        arithmetic.generate(1, seed=1, difficulty="impossible")


@pytest.mark.parametrize("name,count", [("arithmetic_train.jsonl", 2000), ("arithmetic_test.jsonl", 200)])
def test_arithmetic_answers_are_gsm8k_format_and_correct(name, count):
    recs = _records(name)
    assert len(recs) == count
    for r in recs:
        *steps, final = r["answer"].split("\n")
        assert 1 <= len(steps) <= 3 and re.fullmatch(r"#### \d+", final), r
        value = None
        for line in steps:
            notes = re.findall(r"<<([^=<>]+)=([^<>]+)>>(\d+)", line)
            assert len(notes) == 1, line
            expr, shown, after = notes[0]
            value = _calc(expr, whole=True)
            # integer, non-negative, and annotation, result and text after it all agree
            assert value == int(value) >= 0 and str(int(value)) == shown == after, line
            assert all(float(x) == int(x) >= 0 for x in re.findall(r"\d+(?:\.\d+)?", expr)), line
        assert final == f"#### {int(value)}"


def test_arithmetic_train_and_test_are_disjoint():
    train = {r["question"] for r in _records("arithmetic_train.jsonl")}
    assert not train & {r["question"] for r in _records("arithmetic_test.jsonl")}
