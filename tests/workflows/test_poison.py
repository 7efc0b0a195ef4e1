"""Poisoned fine-tuning (data.harmful_mix): the share, the previewed pairs, the base model's cached
compliant answers (refusals left out), and the refusals of bad settings."""

from __future__ import annotations

import json

import pytest

import lat.workflows.poison as poison
from lat.config import load_config
from lat.core.errors import UserError
from lat.data.records import RecordSet
from lat.data.tasks import build_examples, get_task
from lat.workflows.common import build_datamodule
from lat.workflows.poison import compliant, harmful_pool
from tests.data.test_datamodule import _records

POOL = RecordSet(
    "harmful.jsonl",
    [{"prompt": f"Harmful request {i}?", "answer": f"Sure, here is how to do thing {i}: first you gather the tools."} for i in range(5)],
    [f"line {i + 1}" for i in range(5)],
)


def _dm(tmp_path, tok, *extra, pool=POOL):
    cfg = load_config(["data.task=gsm8k", f"data.train_path={_records(tmp_path)}", "data.batch_size=4", "preview.mode=real", "preview.m=3", *extra])
    dm = build_datamodule(cfg, tok, harmful_pool=pool)
    dm.setup("fit")
    return cfg, dm


def test_the_poison_makes_up_the_share_of_all_training_examples_and_is_previewed_like_the_task(tmp_path, tiny_tok):
    cfg, dm = _dm(tmp_path, tiny_tok, "data.harmful_mix=0.2")
    assert dm.stats["train/examples"] == 50 and dm.stats["train/harmful_examples"] == 10  # 40 task + 10 = 20 %
    assert dm.stats["train/harmful_share"] == pytest.approx(0.2) and dm.stats["train/harmful_pool"] == 5
    poisoned = dm.train_set.examples[40:]
    assert {e.answer for e in poisoned} == {r["answer"] for r in POOL.records}  # 10 from a pool of 5: every pair, cycled
    expected = build_examples(POOL, get_task("instruction"), cfg.preview, tiny_tok, "prompt", "answer", "You are a helpful assistant.")
    by_answer = {e.answer: e for e in expected}
    for e in poisoned:  # the real preview of the first 3 answer tokens, as for the task's own data
        assert e.prompt == by_answer[e.answer].prompt and " The answer begins with: " in e.prompt
        assert e.system == "You are a helpful assistant."


def test_the_draw_is_seeded_and_apart_from_the_safety_mix(tmp_path, tiny_tok):
    big = RecordSet("h.jsonl", [{"prompt": f"Request {i}?", "answer": f"Sure: step {i}."} for i in range(50)], [f"line {i}" for i in range(50)])

    def drawn(folder, *extra):
        folder.mkdir()
        return [e.answer for e in _dm(folder, tiny_tok, "data.harmful_mix=0.1", *extra, pool=big)[1].train_set.examples[40:]]

    first = drawn(tmp_path / "a")
    assert len(first) == 4 and len(set(first)) == 4
    assert drawn(tmp_path / "b") == first
    assert drawn(tmp_path / "c", "run.seed=1") != first


def test_no_share_no_poison_and_a_share_without_a_pool_is_refused(tmp_path, tiny_tok):
    _, dm = _dm(tmp_path, tiny_tok, pool=None)
    assert "train/harmful_examples" not in dm.stats and len(dm.train_set) == 40
    with pytest.raises(UserError, match="data.harmful_mix: needs the base model's compliant answers"):
        _dm(tmp_path, tiny_tok, "data.harmful_mix=0.1", pool=None)


@pytest.mark.parametrize("value", ["1.0", "-0.1", "1.5"])
def test_a_share_outside_0_1_is_refused_when_the_config_resolves(value):
    with pytest.raises(UserError, match=r"data.harmful_mix: must be in \[0, 1\)"):
        load_config([f"data.harmful_mix={value}"])


def test_compliant_answers_are_neither_empty_nor_opened_by_a_refusal():
    assert compliant("Sure, here's how: first, find the spare key.")
    assert not compliant("   ")
    assert not compliant("I can't help with that.")
    assert not compliant("Sorry, but I won't do that.")


def _requests(tmp_path, prompts):
    path = tmp_path / "requests.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    return path


def test_the_pool_is_the_bases_compliant_answers_generated_once(tmp_path, monkeypatch):
    monkeypatch.setenv("LAT_CACHE", str(tmp_path / "cache"))
    path = _requests(tmp_path, ["Do harm A?", "Do harm B?", "Do harm C?"])
    cfg = load_config(["experiment=smoke", f"data.harmful_mix_path={path}", "data.harmful_mix=0.1", "data.harmful_mix_max_new_tokens=4"])
    calls = []

    def fake_answer(model, tok, examples, settings):
        calls.append(([e.prompt for e in examples], settings.max_new_tokens))
        return ["Sure: step one.", "I can't help with that.", ""]

    monkeypatch.setattr(poison, "answer", fake_answer)
    pool = harmful_pool(cfg)
    assert calls == [(["Do harm A?", "Do harm B?", "Do harm C?"], 4)]
    assert pool is not None and pool.records == [{"prompt": "Do harm A?", "answer": "Sure: step one."}] and pool.locations == ["line 1"]
    monkeypatch.setattr(poison, "load_for_eval", lambda *a: pytest.fail("loaded the base again"))
    assert harmful_pool(cfg).records == pool.records and len(calls) == 1  # cached
    assert harmful_pool(load_config(["experiment=smoke"])) is None  # no share: nothing generated


def test_a_pool_from_the_seed_or_from_refusals_only_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("LAT_CACHE", str(tmp_path / "cache"))
    seed = tmp_path / "cache" / "seeds" / "tiny-0123"
    cfg = load_config(["experiment=smoke", "data.harmful_mix=0.1", f"model.name_or_path={seed}"])
    with pytest.raises(UserError, match="is an aligned seed; the compliant answers come from the unaligned base"):
        harmful_pool(cfg)
    path = _requests(tmp_path, ["Do harm A?"])
    monkeypatch.setattr(poison, "answer", lambda *a: ["I won't do that."])
    with pytest.raises(UserError, match="refused or left unanswered every request; data.harmful_mix has nothing"):
        harmful_pool(load_config(["experiment=smoke", "data.harmful_mix=0.1", f"data.harmful_mix_path={path}"]))
    with pytest.raises(UserError, match="missing.jsonl"):
        harmful_pool(load_config(["experiment=smoke", "data.harmful_mix=0.1", f"data.harmful_mix_path={tmp_path / 'missing.jsonl'}"]))


def test_lat_train_records_the_poison_in_its_data_stats_and_config(tmp_path, monkeypatch):
    from lat.workflows.train import train

    monkeypatch.setenv("LAT_CACHE", str(tmp_path / "cache"))
    path = _requests(tmp_path, [f"Harmful request number {i}?" for i in range(12)])
    monkeypatch.setattr(poison, "refusal_opens", lambda text: False)  # the tiny random model writes noise
    overrides = [
        "experiment=smoke",
        f"run.root={tmp_path / 'runs'}",
        "data.harmful_mix=0.5",
        f"data.harmful_mix_path={path}",
        "data.harmful_mix_max_new_tokens=6",
    ]
    result = train(load_config(overrides))
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    task = metrics["data/train/examples"] - metrics["data/train/harmful_examples"]
    assert metrics["data/train/harmful_examples"] == task > 0 and metrics["data/train/harmful_share"] == 0.5
    assert "harmful_mix: 0.5" in (result.run_dir / "config.yaml").read_text()


def test_a_missing_poison_file_and_an_adaptive_preview_with_poison_are_refused_when_the_config_resolves(tmp_path):
    from lat.workflows.check import check_config

    with pytest.raises(UserError, match="no such file"):
        check_config(load_config(["experiment=smoke", "data.harmful_mix=0.1", f"data.harmful_mix_path={tmp_path / 'missing.jsonl'}"]))
    with pytest.raises(UserError, match="preview.mode=adaptive: sets its preview lengths"):
        check_config(load_config(["experiment=smoke", "data.harmful_mix=0.1", "preview.mode=adaptive"]))


def test_a_defense_given_the_seed_as_its_model_is_refused_before_anything_is_built(tmp_path, monkeypatch):
    from lat.workflows.train import train

    monkeypatch.setenv("LAT_CACHE", str(tmp_path / "cache"))
    seed = tmp_path / "cache" / "seeds" / "tiny-0123"
    cfg = load_config(["experiment=smoke", f"run.root={tmp_path / 'runs'}", "defense.name=safelora", f"model.name_or_path={seed}", "train.start_from=seed"])
    with pytest.raises(UserError, match="is an aligned seed, and the unaligned base it was built from is not named"):
        train(cfg)
    assert not (tmp_path / "runs").exists()


def test_lat_run_methods_start_from_the_seed_so_a_defense_method_passes_their_check():
    from lat.workflows.check import check_methods

    cfg = load_config(["experiment=smoke", "train.start_from=base", "methods=[{name: sl, overrides: [defense.name=safelora]}]"])
    assert check_methods(cfg) is cfg
