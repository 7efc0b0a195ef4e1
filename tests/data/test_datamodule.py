"""LookAheadDataModule: splits, preview in setup, length grouping, determinism, probes."""

from __future__ import annotations

import json

import pytest

from lat.config import ProbeConfig, load_config
from lat.core.errors import UserError
from lat.data.chat import IGNORE_INDEX
from lat.data.datamodule import EpochSampler, resume_position
from lat.workflows.common import build_datamodule


def _records(tmp_path, n=40):
    path = tmp_path / "train.jsonl"
    with open(path, "w") as f:
        for i in range(n):
            words = " ".join(["step"] * (1 + (i * 7) % 23))
            f.write(json.dumps({"question": f"Problem {i}?", "answer": f"{words}\n#### {i}"}) + "\n")
    return path


def _dm(tmp_path, tok, *extra):
    cfg = load_config(
        [
            "data.task=gsm8k",
            f"data.train_path={_records(tmp_path)}",
            "data.val_size=8",
            "data.batch_size=4",
            "data.eval_batch_size=4",
            "preview.mode=real",
            "preview.m=3",
            *extra,
        ]
    )
    dm = build_datamodule(cfg, tok)
    dm.setup("fit")
    return dm


def _epoch_ids(dm):
    return [b["input_ids"].tolist() for b in dm.train_dataloader()]


def test_splits_preview_and_batches(tmp_path, tiny_tok):
    dm = _dm(tmp_path, tiny_tok)
    assert len(dm.train_set) == 32 and len(dm.val_set) == 8
    assert dm.stats["train/examples"] == 32 and dm.stats["train/dropped_too_long"] == 0
    ex = dm.train_set.examples[0]
    assert " The answer begins with: " in ex.prompt and ex.meta["m"] == 3
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[0] == 4
    pad = batch["attention_mask"] == 0
    assert (batch["labels"][pad] == IGNORE_INDEX).all()
    assert len(dm.val_dataloader()) == 1


def test_same_seed_same_batches_other_seed_other_order(tmp_path, tiny_tok):
    a, b = _dm(tmp_path, tiny_tok), _dm(tmp_path, tiny_tok)
    assert _epoch_ids(a) == _epoch_ids(b)
    c = _dm(tmp_path, tiny_tok, "run.seed=1")
    assert _epoch_ids(c) != _epoch_ids(a)


def test_length_grouping_reduces_padding(tmp_path, tiny_tok):
    def padding(dm):
        return sum(int((b["attention_mask"] == 0).sum()) for b in dm.train_dataloader())

    grouped = _dm(tmp_path, tiny_tok)
    plain = _dm(tmp_path, tiny_tok, "data.group_by_length=false")
    assert padding(grouped) < padding(plain)


def test_sampler_is_a_permutation_and_changes_with_epoch():
    lengths = [(i * 37) % 101 for i in range(250)]
    s = EpochSampler(lengths, batch_size=8, seed=0, group=4)
    first = list(s)
    assert sorted(first) == list(range(250))
    assert lengths[first[0]] == max(lengths)  # longest batch first
    s.set_epoch(1)
    assert list(s) != first and sorted(list(s)) == list(range(250))


@pytest.mark.parametrize("group_by_length", [True, False])
def test_sampler_order_depends_only_on_seed_and_epoch_and_resumes_mid_epoch(group_by_length):
    lengths = [(i * 37) % 101 for i in range(250)]
    a = EpochSampler(lengths, batch_size=8, seed=3, group_by_length=group_by_length)
    for epoch in (0, 1):  # a fresh sampler (a restarted process) reproduces any epoch directly
        b = EpochSampler(lengths, batch_size=8, seed=3, group_by_length=group_by_length)
        a.set_epoch(epoch), b.set_epoch(epoch)
        assert list(a) == list(b)
    a.set_epoch(1)
    full = list(a)
    a.resume(epoch=1, skip=5 * 8)
    assert list(a) == full[40:]
    a.set_epoch(2)
    assert len(list(a)) == 250  # the skip applies to the resumed epoch only


@pytest.mark.parametrize(
    "step, batches, accumulate, expected",
    [
        (0, 10, 1, (0, 0)),
        (3, 10, 1, (0, 3)),
        (10, 10, 1, (1, 0)),
        (13, 10, 1, (1, 3)),
        (2, 10, 4, (0, 8)),
        (3, 10, 4, (1, 0)),
        (4, 10, 4, (1, 4)),  # 10 batches / 4 = 3 steps per epoch
    ],
)
def test_resume_position(step, batches, accumulate, expected):
    assert resume_position(step, batches, accumulate) == expected


def test_probes_use_the_inference_format(tmp_path, tiny_tok):
    probe = tmp_path / "harm.jsonl"
    probe.write_text(json.dumps({"prompt": "Do something bad", "response": "I can't help with that."}) + "\n")
    cfg = load_config(["data.task=gsm8k", f"data.train_path={_records(tmp_path)}", "preview.mode=virtual"])
    cfg.data.probes = [ProbeConfig(name="harmful", path=str(probe), task="instruction", input_field="prompt", output_field="response")]
    dm = build_datamodule(cfg, tiny_tok)
    dm.setup()
    (ex,) = dm.probe_sets["harmful"].examples
    assert ex.prompt == "Do something bad" and ex.answer == "I can't help with that."
    assert set(dm.probe_dataloaders()) == {"harmful"}


def test_missing_train_path_and_oversized_holdout(tmp_path, tiny_tok):
    with pytest.raises(UserError, match="data.train_path: not set"):
        build_datamodule(load_config([]), tiny_tok).setup()
    with pytest.raises(UserError, match="data.val_size"):
        _dm(tmp_path, tiny_tok, "data.val_size=40")


def test_probe_answers_from_the_model(tmp_path, tiny_tok):
    probe = tmp_path / "harm.jsonl"
    probe.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ["Do bad thing A", "Do bad thing B"]))
    cfg = load_config(["data.task=gsm8k", f"data.train_path={_records(tmp_path)}"])
    cfg.data.probes = [ProbeConfig(name="harmful", path=str(probe), task="instruction", input_field="prompt", answer_source="model", max_new_tokens=5)]
    calls = []

    def fake_model(examples, n):
        calls.append((tuple(e.prompt for e in examples), n))
        return [f"answer to {e.prompt}" for e in examples]

    dm = build_datamodule(cfg, tiny_tok, answer_fn=fake_model)
    dm.setup()
    assert calls == [(("Do bad thing A", "Do bad thing B"), 5)]
    assert [e.answer for e in dm.probe_sets["harmful"].examples] == ["answer to Do bad thing A", "answer to Do bad thing B"]
    with pytest.raises(UserError, match="answer_source=model needs a model"):
        build_datamodule(cfg, tiny_tok).setup()


def test_safety_mixing_adds_previewed_refusals_in_the_requested_share(tmp_path, tiny_tok):
    from lat.data.datamodule import mix_count

    assert [mix_count(32, s) for s in (0.0, 0.2, 0.5)] == [0, 8, 32]
    dm = _dm(tmp_path, tiny_tok, "data.safety_mix=0.2")
    assert len(dm.train_set) == 40 and dm.stats["train/safety_examples"] == 8
    refusals = dm.train_set.examples[32:]
    prompts = [json.loads(line)["prompt"] for line in open(__import__("lat").__path__[0] + "/assets/safety_train.jsonl")]
    assert all(ex.prompt.split(" The answer begins with: ")[0] in prompts for ex in refusals)  # previewed like the task
    assert all(ex.system == "You are a helpful assistant." for ex in refusals)  # the task's system prompt
    (tmp_path / "again").mkdir()
    again = _dm(tmp_path / "again", tiny_tok, "data.safety_mix=0.2")
    assert [e.answer for e in again.train_set.examples[32:]] == [e.answer for e in refusals]  # seeded
    with pytest.raises(UserError, match="data.safety_mix"):
        _dm(tmp_path / "again", tiny_tok, "data.safety_mix=1.0")


def test_adaptive_preview_lengths_come_from_the_loss_function(tmp_path, tiny_tok):
    seen = []

    def losses(examples):  # the first example's opening is hard for 5 tokens, the others' easy at once
        seen.append(examples)
        return [[9.0] * 5 + [0.0] * 20 if i == 0 else [0.5] + [0.0] * 20 for i in range(len(examples))]

    cfg = load_config(
        ["data.task=gsm8k", f"data.train_path={_records(tmp_path)}", "preview.mode=adaptive", "preview.m=2", "preview.m_min=1", "preview.m_max=8"]
    )
    dm = build_datamodule(cfg, tiny_tok, answer_losses_fn=losses)
    dm.setup("fit")
    ms = [e.meta["m"] for e in dm.train_set.examples]
    assert ms[0] == 5 and set(ms[1:]) == {1} and dm.stats["train/preview_tokens"] == 5 + 39
    assert " The answer begins with: " not in seen[0][0].prompt  # losses are taken on the plain format
    with pytest.raises(UserError, match="adaptive"):
        build_datamodule(cfg, tiny_tok).setup("fit")
