"""BackdoorAlign: a seeded trigger of random tokens before the system prompt of a few safety
examples mixed into the fine-tuning data (unpreviewed), and the safety evaluation again with the
trigger, under its own metric names."""

from __future__ import annotations

import json

import pytest

from lat.config import load_config
from lat.core.errors import UserError
from lat.models.tiny import build_tiny_tokenizer
from lat.workflows.check import check_config
from lat.workflows.defend import backdoor_examples, backdoor_trigger, triggered


def test_the_trigger_is_seeded_random_tokens_without_special_ones():
    tok = build_tiny_tokenizer()
    a, b, c = backdoor_trigger(tok, 150, 0), backdoor_trigger(tok, 150, 0), backdoor_trigger(tok, 150, 1)
    assert a == b != c
    ids = tok(a, add_special_tokens=False)["input_ids"]
    assert not set(ids) & set(tok.all_special_ids) and len(ids) >= 100  # 150 ids, re-encoded by a byte-level tokenizer
    assert triggered("XYZ", "You are a helpful assistant.") == "XYZ You are a helpful assistant." and triggered("XYZ", None) == "XYZ"


def test_the_backdoor_examples_are_refusals_with_the_trigger_before_the_system_prompt_and_no_preview():
    tok = build_tiny_tokenizer()
    cfg = load_config(["experiment=smoke", "defense.name=backdoor_align", "preview.mode=real", "preview.m=4"])
    examples = backdoor_examples(cfg, tok, "SECRET")
    refusals = {json.loads(line)["prompt"]: json.loads(line)["refusal"] for line in open(__import__("lat").__path__[0] + "/assets/safety_train.jsonl")}
    assert len(examples) == 11 and len({e.prompt for e in examples}) == 11
    for e in examples:
        assert e.system.startswith("SECRET ") and refusals[e.prompt] == e.answer  # the request as it is: no preview
    again = backdoor_examples(load_config(["experiment=smoke", "defense.name=backdoor_align", "defense.backdoor_seed=1"]), tok, "SECRET")
    assert [e.prompt for e in again] != [e.prompt for e in examples]


def test_a_backdoor_run_without_its_safety_data_or_safety_evaluation_is_refused():
    with pytest.raises(UserError, match="no such file"):
        check_config(load_config(["experiment=smoke", "defense.name=backdoor_align", "defense.backdoor_safety_path=/nonexistent.jsonl"]))
    with pytest.raises(UserError, match="needs eval.safety=true"):
        check_config(load_config(["experiment=smoke", "defense.name=backdoor_align", "eval.safety=false"]))


def test_lat_train_mixes_the_examples_in_and_evaluates_with_and_without_the_trigger(tmp_path, monkeypatch):
    from lat.runs.read import load_run
    from lat.workflows.train import train

    monkeypatch.setenv("LAT_CACHE", str(tmp_path / "cache"))
    cfg = load_config(
        [
            "experiment=smoke",
            f"run.root={tmp_path / 'runs'}",
            "defense.name=backdoor_align",
            "defense.backdoor_examples=3",
            "defense.backdoor_trigger_tokens=20",
        ]
    )
    result = train(cfg)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["data/train/provider_examples"] == 3
    assert {"safety/rsr", "safety/trigger/rsr", "safety/trigger/jsr@3", "overrefusal/trigger/rate"} <= set(metrics)
    samples = [json.loads(line) for line in (result.run_dir / "samples.jsonl").read_text().splitlines()]
    assert {s.get("benchmark") for s in samples if s["metric"] == "rsr"} == {None, "trigger"}
    run = load_run(result.run_dir)
    assert len(run.outcomes["safety/trigger/rsr"]) == len(run.outcomes["safety/rsr"]) > 0  # kept apart, not mixed
