"""Safety and utility evaluations on a tiny model with a scripted judge; eval records."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from lat.config import EvalConfig, ModelConfig
from lat.data.records import RecordSet
from lat.evaluation.benchmarks import HarmfulItem, evaluate_safety, evaluate_utility, load_harmful
from lat.models.loading import load_model_and_tokenizer
from lat.runs.folder import record_eval


@dataclass(frozen=True)
class J:
    label: str
    score: float | None = None
    detail: str = ""


class ScriptedJudge:
    """Judges by prompt: 'bad*' -> unsafe, 'down*' -> unjudged, otherwise safe; records what it saw."""

    name = "scripted"

    def __init__(self):
        self.seen = []

    def judge(self, prompts, responses):
        self.seen += list(zip(prompts, responses))
        return [J("unsafe") if p.startswith("bad") else J("unjudged") if p.startswith("down") else J("safe") for p in prompts]


@pytest.fixture(scope="module")
def tiny():
    model, tok = load_model_and_tokenizer(ModelConfig(name_or_path="tiny"), seed=1)
    return model.eval(), tok


ITEMS = [
    HarmfulItem("bad one", "malware", "Sure, here is the code you wanted for that"),
    HarmfulItem("fine one", "malware", "Sure, happy to help with all of it"),
    HarmfulItem("bad two", "fraud", None),
    HarmfulItem("down one", "fraud", "Of course, the first step is simple enough"),
]


def test_rsr_jsr_categories_and_unjudged(tiny):
    model, tok = tiny
    judge = ScriptedJudge()
    cfg = EvalConfig(jsr_k=[3, 5], max_new_tokens=4, batch_size=2)
    metrics, rows = evaluate_safety(model, tok, ITEMS, judge, cfg)
    # RSR over judged only: fine one safe, bad one/two unsafe, down one unjudged -> 1/3
    assert metrics["safety/rsr"] == pytest.approx(1 / 3)
    assert metrics["safety/rsr/unjudged"] == 1 and metrics["safety/rsr/n"] == 4
    assert metrics["safety/rsr/malware"] == 0.5 and metrics["safety/rsr/fraud"] == 0.0
    # JSR only on items with a harmful response (3 of them): bad one unsafe, fine one safe
    assert metrics["safety/jsr@3/n"] == 3 and metrics["safety/jsr@3"] == 0.5
    jsr = [r for r in rows if r["metric"] == "jsr@3"]
    for r in jsr:
        item = next(it for it in ITEMS if it.prompt == r["prompt"])
        k3 = tok.decode(tok(item.response, add_special_tokens=False)["input_ids"][:3])
        assert r["prefix"] == k3 and r["response"].startswith(k3)  # the judge sees prefix + continuation
    assert {p for p, _ in judge.seen} >= {"bad one", "fine one", "down one"}
    assert set(rows[0]) >= {"prompt", "prefix", "response", "label", "score", "category", "empty"}


def test_utility_on_gsm8k_format(tiny):
    model, tok = tiny
    recs = RecordSet("mem", [{"question": "1+1?", "answer": "1+1=2\n#### 2"}, {"question": "2+2?", "answer": "#### 4"}], ["r1", "r2"])
    metrics, rows = evaluate_utility(model, tok, recs, "gsm8k", EvalConfig(utility_max_new_tokens=4))
    assert set(metrics) == {"utility/gsm8k_acc", "utility/gsm8k_last_number_acc", "utility/n", "utility/empty"}
    assert metrics["utility/n"] == 2 and rows[0]["gold"] == "2"


def test_load_harmful_field_mapping(tmp_path):
    p = tmp_path / "h.csv"
    p.write_text("q,kind,ans\nhow to x,malware,Sure here\nhow to y,,\n")
    cfg = EvalConfig(harmful_prompt_field="q", harmful_category_field="kind", harmful_response_field="ans")
    items = load_harmful(str(p), cfg)
    assert items[0] == HarmfulItem("how to x", "malware", "Sure here")
    assert items[1].category == "all"
    from lat.core.errors import UserError

    with pytest.raises(UserError, match="field 'prompt': missing"):
        load_harmful(str(p), EvalConfig())


def test_record_eval_appends(tmp_path):
    record_eval(tmp_path, {"safety/rsr": 0.5}, [{"prompt": "a"}], 0, 10)
    out = record_eval(tmp_path, {"safety/rsr": 0.75}, [{"prompt": "b"}], 1, 20)
    assert out["safety/rsr"] == 0.75 and [e["step"] for e in out["evals"]] == [10, 20]
    lines = [json.loads(x) for x in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert [(x["epoch"], x["prompt"]) for x in lines] == [(0, "a"), (1, "b")]


def test_capped_harmful_sets_cover_every_category():
    from lat.evaluation.benchmarks import balanced_head

    items = [HarmfulItem(f"{c}{i}", c) for c in "abc" for i in range(4)]
    assert [it.prompt for it in balanced_head(items, 5)] == ["a0", "b0", "c0", "a1", "b1"]
    assert balanced_head(items, None) == items and balanced_head(items, 99) == items
    shipped = load_harmful("pkg:assets/harmful_eval.jsonl", EvalConfig(max_samples=22))
    assert len({it.category for it in shipped}) == 11
