"""Shared fixtures: tokenizers, the real datasets beside the project, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "datasets"

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_tok():
    """The byte-level ChatML tokenizer of the tiny test model (built in-process)."""
    from lat.models.tiny import build_tiny_tokenizer

    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def smol_tok():
    """SmolLM2-135M-Instruct's real tokenizer from the embedded model cache.

    Built once per machine (the CI setup step builds it); skipped when it cannot be had.
    """
    from transformers import AutoTokenizer

    from lat.core.errors import UserError
    from lat.models.embedded import embedded_model_dir

    try:
        path = embedded_model_dir()
    except (UserError, OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"embedded model unavailable: {e}")
    return AutoTokenizer.from_pretrained(path)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """../shared/datasets (real GSM8K and SAMSum); tests using it skip when it is absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared/datasets is absent")
    return SHARED


def run_lat(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real ``lat`` console entry point in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "lat.cli", *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
