"""A tiny, randomly initialised chat model for tests and smoke runs.

Everything here is built in-process from code, so it needs no network and no cache, and takes a
few milliseconds. The tokenizer speaks the same ChatML dialect as SmolLM2 (``<|im_start|>`` /
``<|im_end|>``), so code written against the tiny pair runs unchanged on the embedded model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"

# SmolLM2's ChatML turns, minus its default system prompt: tests want to see exactly what they
# passed in, not a system turn that appears from nowhere.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# A few merges of frequent English pairs, so that some tokens span several bytes, as they do in
# a real BPE vocabulary (code that maps tokens to characters must not assume one byte each).
_MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("e", "r"), ("a", "n"), ("Ġ", "a")]


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins ByteLevel uses for raw bytes, indexed by byte value.

    Printable Latin-1 bytes stand for themselves; the rest are shifted to code points from 256
    on, in byte order. Indexing by byte value makes token id ``b`` mean byte ``b``.
    """
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(ord("¡"), ord("¬") + 1))
    printable |= set(range(ord("®"), ord("ÿ") + 1))
    symbols, shifted = [], 0
    for byte in range(256):
        if byte in printable:
            symbols.append(chr(byte))
        else:
            symbols.append(chr(256 + shifted))
            shifted += 1
    return symbols


def _backend_tokenizer() -> Tokenizer:
    """A byte-level BPE ``tokenizers.Tokenizer`` over the 256 bytes plus a few merges."""
    vocab = {symbol: index for index, symbol in enumerate(_byte_symbols())}
    for left, right in _MERGES:
        vocab.setdefault(left + right, len(vocab))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=list(_MERGES)))
    # No normalizer and no prefix space: decode(encode(text)) must give back text exactly.
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    specials = [AddedToken(token, special=True, normalized=False) for token in (IM_START, IM_END)]
    backend.add_special_tokens(specials)
    return backend


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Build the tiny byte-level ChatML tokenizer.

    Returns:
        A fast tokenizer whose vocabulary is the 256 bytes (ids 0-255 are the byte values), a
        handful of merges, then ``<|im_start|>`` (bos) and ``<|im_end|>`` (eos and pad). Padding
        is on the left, as batched generation needs.
    """
    return PreTrainedTokenizerFast(
        tokenizer_object=_backend_tokenizer(),
        bos_token=IM_START,
        eos_token=IM_END,
        pad_token=IM_END,
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
        # The default cleanup rewrites " ." to "." and would break exact round trips.
        clean_up_tokenization_spaces=False,
    )


def build_tiny_model(
    vocab_size: int,
    seed: int = 0,
    hidden_size: int = 16,
    num_layers: int = 2,
    num_heads: int = 2,
    max_position_embeddings: int = 512,
    **config_kwargs: Any,
) -> LlamaForCausalLM:
    """Build a tiny Llama with random weights that depend only on ``seed``.

    Args:
        vocab_size: Number of token ids; ``len(tokenizer)`` for the tiny tokenizer.
        seed: Seed of the weight initialisation. The global RNG state is left untouched.
        hidden_size: Width of the residual stream; must be divisible by ``num_heads``.
        num_layers: Number of decoder layers.
        num_heads: Number of attention heads (and of key/value heads).
        max_position_embeddings: Longest sequence the model is configured for.
        **config_kwargs: Further ``LlamaConfig`` fields, e.g. ``pad_token_id``,
            ``eos_token_id``, ``bos_token_id``.

    Returns:
        A float32 ``LlamaForCausalLM`` with untied input and output embeddings.
    """
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        # Untied, so that tests of which parameters train see two distinct embedding matrices.
        tie_word_embeddings=False,
        **config_kwargs,
    )
    # fork_rng restores the CPU RNG afterwards, so building a model never shifts the random
    # stream of the caller (data shuffling, dropout) - a hidden coupling that breaks reruns.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.to(torch.float32)


def _special_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    """The tokenizer's bos/eos/pad ids, as ``LlamaConfig`` keyword arguments."""
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def save_tiny(dir: str | Path, seed: int = 0) -> Path:  # noqa: A002 - name fixed by the public API
    """Save a tiny tokenizer and a matching model, so ``from_pretrained(dir)`` loads both.

    Args:
        dir: Folder to write into; created if missing.
        seed: Seed of the model weights.

    Returns:
        The folder, as a ``Path``.
    """
    folder = Path(dir)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(len(tokenizer), seed=seed, **_special_ids(tokenizer))
    model.save_pretrained(folder)  # safetensors is the only format transformers 5 writes
    tokenizer.save_pretrained(folder)
    return folder
