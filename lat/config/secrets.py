"""Secrets: values of secret environment variables never reach a file, a log or a folder name."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lat.config.schema import Config

SECRET_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET", "_PASSWORD")
"""Environment variables whose names end like this hold secrets (WANDB_API_KEY, HF_TOKEN ...)."""


def secrets(cfg: Config | None = None) -> dict[str, str]:
    """Environment variable name -> value of every secret in the environment (values of 8+
    characters), including the variable the LLM judge reads its key from."""
    names = {n for n in os.environ if n.upper().endswith(SECRET_SUFFIXES)}
    if cfg is not None:
        names.add(cfg.eval.judge.llm_api_key_env)
    return {n: os.environ[n] for n in sorted(names) if len(os.environ.get(n, "")) >= 8}


def redact(text: str, found: dict[str, str]) -> str:
    """``text`` with every secret value replaced by ``<redacted $NAME>``."""
    for name, value in found.items():
        text = text.replace(value, f"<redacted ${name}>")
    return text


def redact_tree(obj: Any, found: dict[str, str]) -> Any:
    if isinstance(obj, dict):
        return {k: redact_tree(v, found) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact_tree(v, found) for v in obj]
    return redact(obj, found) if isinstance(obj, str) else obj
