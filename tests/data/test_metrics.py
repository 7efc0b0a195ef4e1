"""Utility metrics: the paper's GSM8K extractor, the last-number extractor, ROUGE."""

from __future__ import annotations

import pytest

from lat.data.metrics import TASK_METRICS, gsm8k_scores, hash_answer, last_number, rouge_scores


@pytest.mark.parametrize(
    "text, want",
    [
        ("so 3 + 4 = 7\n#### 7", "7"),
        ("#### 1,234", "1234"),
        ("#### 12 \n", "12"),
        ("first #### 3 then #### 5", "5"),
        ("#### $72", "$72"),
        ("####", ""),
        ("The answer is 7.", None),
    ],
)
def test_hash_answer(text, want):
    assert hash_answer(text) == want


@pytest.mark.parametrize(
    "text, want",
    [("The answer is 7.", "7"), ("costs $1,250 in total", "1250"), ("-3 degrees", "-3"), ("2.5 then 4.0", "4"), ("none", None), ("3.75", "3.75")],
)
def test_last_number(text, want):
    assert last_number(text) == want


def test_gsm8k_scores_exact_match_and_last_number():
    refs = ["a\n#### 72", "b\n#### 1,000", "c\n#### 5", "d\n#### 9"]
    preds = ["so 72\n#### 72", "#### 1000", "the answer is 5", "#### 9 apples"]
    scores, rows = gsm8k_scores(preds, refs)
    assert [r["correct"] for r in rows] == [True, True, False, False]
    assert [r["correct_last_number"] for r in rows] == [True, True, True, True]
    assert scores == {"gsm8k_acc": 0.5, "gsm8k_last_number_acc": 1.0}


def test_rouge_identity_disjoint_and_stemming():
    scores, rows = rouge_scores(["the cat sat on the mat", "dogs running", "zzz"], ["the cat sat on the mat", "dog runs", "qqq"])
    assert rows[0] == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}
    assert rows[1]["rouge1"] == 1.0  # Porter stemmer: dogs/dog, running/runs -> run
    assert rows[2]["rouge1"] == 0.0
    assert scores["rouge1"] == pytest.approx(2 / 3)


def test_registry():
    assert set(TASK_METRICS) == {"gsm8k", "samsum", "instruction"}
