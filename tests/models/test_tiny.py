"""Tests of the tiny offline tokenizer and model."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lat.models.tiny import IM_END, IM_START, build_tiny_model, build_tiny_tokenizer, save_tiny

TEXTS = [
    "",
    "the thin hen",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\r\n",
    "héllo wörld, ünïcödé ß",
    "日本語のテキスト",
    "emoji 😀👍🏽 and ☃ snow",
    "combining e\u0301 vs é, zero\u200bwidth",
    "punctuation . , ! ? 's n't",
    "\x00\x01 control \x7f bytes",
]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.mark.parametrize("text", TEXTS)
def test_tokenizer_round_trips_text_exactly(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text


def test_tokenizer_special_tokens(tokenizer):
    assert tokenizer.bos_token == IM_START
    assert tokenizer.eos_token == IM_END
    assert tokenizer.pad_token == IM_END
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    assert tokenizer.padding_side == "left"
    # Plain encoding adds nothing around the text.
    assert tokenizer("ab")["input_ids"] == [ord("a"), ord("b")]
    # Special tokens in text are single ids.
    assert tokenizer.encode(f"a{IM_END}", add_special_tokens=False) == [ord("a"), tokenizer.eos_token_id]


def test_tokenizer_has_multibyte_merges(tokenizer):
    ids = tokenizer.encode(" the", add_special_tokens=False)
    assert len(ids) == 1 and ids[0] >= 256


def test_chat_template_literal(tokenizer):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n")


def test_chat_template_generation_prompt_and_no_default_system(tokenizer):
    messages = [{"role": "user", "content": "What is 12 + 7?"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nWhat is 12 + 7?<|im_end|>\n<|im_start|>assistant\n"


def test_left_padding(tokenizer):
    batch = tokenizer(["a", "abc"], padding=True, return_tensors="pt")
    assert batch["input_ids"][0].tolist() == [tokenizer.pad_token_id] * 2 + [ord("a")]
    assert batch["attention_mask"][0].tolist() == [0, 0, 1]


def test_model_forward_shapes(tokenizer):
    model = build_tiny_model(len(tokenizer), hidden_size=16, num_layers=2, num_heads=2)
    assert model.dtype == torch.float32
    assert not model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    input_ids = torch.randint(0, len(tokenizer), (3, 7))
    logits = model(input_ids=input_ids).logits
    assert logits.shape == (3, 7, len(tokenizer))


def test_model_special_ids_via_kwargs(tokenizer):
    model = build_tiny_model(len(tokenizer), pad_token_id=5, eos_token_id=6, bos_token_id=7)
    assert (model.config.pad_token_id, model.config.eos_token_id, model.config.bos_token_id) == (5, 6, 7)


def _weights(model):
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def test_model_is_deterministic_by_seed_and_keeps_global_rng():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = _weights(build_tiny_model(300, seed=0))
    assert torch.equal(torch.rand(3), expected_next)  # the global RNG stream is undisturbed
    second = _weights(build_tiny_model(300, seed=0))
    other = _weights(build_tiny_model(300, seed=1))
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not torch.equal(first["lm_head.weight"], other["lm_head.weight"])


def test_save_and_load_round_trip(tmp_path):
    folder = save_tiny(tmp_path / "tiny", seed=3)
    assert (folder / "model.safetensors").is_file()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    reference_tokenizer = build_tiny_tokenizer()
    reference = build_tiny_model(
        len(reference_tokenizer),
        seed=3,
        pad_token_id=reference_tokenizer.pad_token_id,
        eos_token_id=reference_tokenizer.eos_token_id,
        bos_token_id=reference_tokenizer.bos_token_id,
    )
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token == IM_END
    assert tokenizer.chat_template == reference_tokenizer.chat_template
    assert tokenizer.encode("héllo 😀 the", add_special_tokens=False) == reference_tokenizer.encode("héllo 😀 the", add_special_tokens=False)
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert model.config.eos_token_id == tokenizer.eos_token_id
    assert model.config.bos_token_id == tokenizer.bos_token_id
    loaded = model.state_dict()
    assert all(torch.equal(loaded[name], tensor) for name, tensor in reference.state_dict().items())
