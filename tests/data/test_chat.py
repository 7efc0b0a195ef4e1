"""Chat formatting and the label-mask invariant for every strategy and chat template used."""

from __future__ import annotations

import copy

import pytest
import torch

from lat.config import PreviewConfig
from lat.core.errors import UserError
from lat.data.chat import IGNORE_INDEX, collate, encode, render, render_prompt
from lat.data.preview import STRATEGIES
from lat.data.records import read_records
from lat.data.tasks import TASKS, Example, build_examples, get_task

# A Llama-2-chat style template (system folded into the first user turn, content stripped),
# written on the tiny tokenizer's special tokens.
LLAMA2_STYLE = (
    "{% if messages[0]['role'] == 'system' %}{% set sys = '<<SYS>>\\n' + messages[0]['content'] + '\\n<</SYS>>\\n\\n' %}"
    "{% set msgs = messages[1:] %}{% else %}{% set sys = '' %}{% set msgs = messages %}{% endif %}"
    "{% for m in msgs %}{% if m['role'] == 'user' %}"
    "{{ '<|im_start|>[INST] ' + (sys if loop.first else '') + m['content'].strip() + ' [/INST]' }}"
    "{% else %}{{ ' ' + m['content'].strip() + ' <|im_end|>' }}{% endif %}{% endfor %}"
)


@pytest.fixture(scope="module")
def llama2_style_tok(tiny_tok):
    tok = copy.deepcopy(tiny_tok)
    tok.chat_template = LLAMA2_STYLE
    return tok


def _tokenizers(request):
    return {
        "tiny-chatml": request.getfixturevalue("tiny_tok"),
        "tiny-llama2-style": request.getfixturevalue("llama2_style_tok"),
        "smollm2": request.getfixturevalue("smol_tok"),
    }


def _strategy_cfg(name):
    return PreviewConfig(mode=name, m=6, m_min=1, m_max=8)


def assert_label_invariant(tok, examples, encoded):
    """No answer token masked, no prompt token unmasked, prompt == inference prompt."""
    assert len(encoded) == len(examples)
    for ex, enc in zip(examples, encoded):
        s = enc.answer_start
        assert enc.labels[:s] == [IGNORE_INDEX] * s
        assert enc.labels[s:] == enc.input_ids[s:] and all(t != IGNORE_INDEX for t in enc.labels[s:])
        assert enc.input_ids[:s] == tok(render_prompt(tok, ex), add_special_tokens=False)["input_ids"]
        span = render(tok, ex)[1]
        assert tok.decode(enc.input_ids[s:]) == span
        assert ex.answer.strip() in span


@pytest.mark.parametrize("template", ["tiny-chatml", "tiny-llama2-style", "smollm2"])
@pytest.mark.parametrize("strategy", list(STRATEGIES))
@pytest.mark.parametrize("task", ["gsm8k", "samsum", "instruction"])
def test_label_mask_invariant(request, template, strategy, task):
    tok = _tokenizers(request)[template]
    recs = read_records("pkg:assets/gsm8k_sample.jsonl")
    fields = {"gsm8k": (None, None), "samsum": ("question", "answer"), "instruction": ("question", "answer")}[task]
    lengths = [1 + i % 7 for i in range(len(recs))] if strategy == "adaptive" else None  # adaptive takes m per record
    examples = build_examples(recs, get_task(task), _strategy_cfg(strategy), tok, *fields, lengths=lengths)
    encoded, dropped = encode(tok, examples)
    assert dropped == []
    assert_label_invariant(tok, examples, encoded)


def test_task_formats_match_the_paper_formatters():
    recs = read_records("pkg:assets/gsm8k_sample.jsonl")
    gsm = build_examples(recs, TASKS.get("gsm8k"), PreviewConfig(mode="vanilla"))[0]
    assert gsm.system == "You are a helpful assistant."
    assert gsm.prompt == recs.records[0]["question"] and gsm.answer == recs.records[0]["answer"]
    from lat.data.records import RecordSet

    sam = RecordSet("mem", [{"dialogue": "\nA: hi\nB: yo \n", "summary": " A greets B. "}], ["record 1"])
    ex = build_examples(sam, TASKS.get("samsum"), PreviewConfig(mode="virtual"))[0]
    assert ex.system == "You are a helpful assistant for dialog summarization."
    # preview first (on raw fields), then the formatter's strip, as in the paper's pipeline
    assert ex.prompt == "Summarize this dialog:\n" + "A: hi\nB: yo \n The answer begins with: Let's solve this problem."
    assert ex.answer == "Let's solve this problem.  A greets B."


def test_instruction_task_appends_context_and_system_override():
    from lat.data.records import RecordSet

    rs = RecordSet("mem", [{"instruction": "Translate", "input": "hola", "output": "hello"}], ["record 1"])
    ex = build_examples(rs, TASKS.get("instruction"), PreviewConfig(), system_prompt="Be brief.")[0]
    assert (ex.prompt, ex.answer, ex.system) == ("Translate\n\nhola", "hello", "Be brief.")
    assert build_examples(rs, TASKS.get("gsm8k"), PreviewConfig(), None, "instruction", "output", "")[0].system is None


def test_unknown_task_lists_known():
    with pytest.raises(UserError, match="unknown task 'mmlu'; known: gsm8k, samsum, instruction"):
        get_task("mmlu")


def test_truncation_keeps_answer_start_and_drops_hopeless(tiny_tok):
    long = Example("Q" * 20, "A" * 200)
    hopeless = Example("Q" * 300, "A")
    encoded, dropped = encode(tiny_tok, [long, hopeless], max_length=80)
    assert dropped == [1]
    (e,) = encoded
    assert len(e.input_ids) == 80 and e.truncated > 0
    full, _ = encode(tiny_tok, [long])
    assert e.input_ids == full[0].input_ids[:80] and e.answer_start == full[0].answer_start


def test_collate_masks_padding_even_when_pad_is_eos(tiny_tok):
    eos = tiny_tok.eos_token_id
    assert tiny_tok.pad_token_id == eos
    encoded, _ = encode(tiny_tok, [Example("hi", "yes"), Example("a much longer question here", "no")])
    for side in ("right", "left"):
        b = collate(encoded, pad_id=eos, side=side)
        assert b["input_ids"].shape == b["labels"].shape == b["attention_mask"].shape
        pad = b["attention_mask"] == 0
        assert pad.any() and (b["labels"][pad] == IGNORE_INDEX).all()
        # the end-of-turn (== pad id) inside each answer keeps its label
        assert ((b["labels"] == eos) & (b["attention_mask"] == 1)).sum(1).tolist() == [1, 1]
        for row, e in enumerate(encoded):
            start = int(b["answer_start"][row])
            assert b["input_ids"][row, start : start + 2].tolist() == e.input_ids[e.answer_start : e.answer_start + 2]
    assert torch.equal(collate(encoded, eos, "left")["attention_mask"][:, -1], torch.ones(2, dtype=torch.long))


def test_template_without_prompt_prefix_is_rejected(tiny_tok):
    tok = copy.deepcopy(tiny_tok)
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}>>{% endif %}"
    with pytest.raises(UserError, match="does not start with the generation prompt"):
        render(tok, Example("q", "a"))
