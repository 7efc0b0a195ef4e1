"""SDFT: the keep / fall-back rule on literal examples, and the rewrite step in the datamodule."""

from __future__ import annotations

import json

import pytest

from lat.config import load_config
from lat.data.sdft import TEMPLATE, keep_rewrite, rewrite_answers
from lat.data.tasks import get_task
from lat.workflows.common import build_datamodule

REF = "She sold 48 / 2 = 24 clips in May.\nIn total 48 + 24 = 72.\n#### 72"


@pytest.mark.parametrize(
    "rewrite, kept",
    [
        ("Half of 48 is 24, so 48 + 24 = 72 clips.\n#### 72", True),  # same final answer, other words
        ("48 + 24 = 72\n#### 72.", False),  # "72." is not "72": the extractor compares exactly
        ("She sold 1,072 clips.\n#### 1,072", False),  # another answer
        ("She sold 72 clips in total.", False),  # no #### answer: keep the reference
        ("   ", False),
    ],
)
def test_gsm8k_keeps_a_rewrite_only_with_the_same_final_answer(rewrite, kept):
    assert keep_rewrite("gsm8k", REF, rewrite, 0.3) is kept


def test_summaries_keep_a_rewrite_above_the_rouge_threshold():
    ref = "Amanda baked cookies and will bring Jerry some tomorrow."
    assert keep_rewrite("samsum", ref, "Amanda baked cookies and will bring some to Jerry tomorrow.", 0.3)
    assert not keep_rewrite("samsum", ref, "The weather is nice today.", 0.3)


def test_rewrite_answers_falls_back_to_the_reference_and_counts():
    seen = []

    def fake_model(prompts, max_new_tokens):
        seen.extend(p.prompt for p in prompts)
        return ["Twenty-four and 48 make 72.\n#### 72 ", "I think it is 5.\n#### 5"]

    answers, kept = rewrite_answers(
        ["Natalia ...?", "Weng ...?"], [REF, "12 / 60 = 0.2\n#### 10"], get_task("gsm8k"), fake_model, 64, 0.3, "You are a helpful assistant."
    )
    assert answers == ["Twenty-four and 48 make 72.\n#### 72", "12 / 60 = 0.2\n#### 10"] and kept == 1
    assert seen[0] == TEMPLATE.format(instruction="Natalia ...?", answer=REF)


def test_datamodule_trains_on_kept_rewrites(tmp_path, tiny_tok):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"question": f"Q{i}?", "answer": f"steps\n#### {i}"}) + "\n" for i in range(4)))
    cfg = load_config(["data.task=gsm8k", f"data.train_path={path}", "data.sdft=true", "preview.mode=vanilla"])
    dm = build_datamodule(cfg, tiny_tok, answer_fn=lambda prompts, n: [f"my way\n#### {i if i % 2 else 99}" for i in range(len(prompts))])
    dm.setup("fit")
    assert [e.answer for e in dm.train_set.examples] == ["steps\n#### 0", "my way\n#### 1", "steps\n#### 2", "my way\n#### 3"]
    assert dm.stats["train/sdft_rewrites_kept"] == 2
