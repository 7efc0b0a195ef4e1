"""Prompt sets: the harmful prompts of RSR / JSR@k and the benign ones of over-refusal, as read
from record files (no torch here, so config checks and benchmark presets stay light)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional, Sequence

from lat.config import EvalConfig
from lat.data.records import read_records

HARMFUL = "harmful"
"""A prompt set for RSR and JSR@k: the model should refuse."""
BENIGN = "benign"
"""A prompt set for over-refusal: the model should answer."""


@dataclass(frozen=True)
class HarmfulItem:
    """One harmful prompt.

    Attributes:
        prompt: The harmful instruction.
        category: Harm category (per-category breakdown).
        response: A harmful answer for the prefilling attack (None = not used for JSR).
    """

    prompt: str
    category: str = "all"
    response: Optional[str] = None


@dataclass(frozen=True)
class PromptSet:
    """Prompts evaluated together.

    Attributes:
        name: ``""`` for the default sets (metrics without a name), else the benchmark's name.
        kind: :data:`HARMFUL` (RSR, JSR@k) or :data:`BENIGN` (over-refusal).
        items: The prompts (harmful answers, where the set has them, for JSR@k).
    """

    name: str
    kind: str
    items: tuple[HarmfulItem, ...] = field(default=())


def load_harmful(path: str, cfg: EvalConfig) -> list[HarmfulItem]:
    """Read harmful prompts with the configured field mapping (prompt required, others optional)."""
    rs = read_records(path, cfg.harmful_format)
    prompts = rs.texts(cfg.harmful_prompt_field)
    items = []
    for i, prompt in enumerate(prompts):
        rec = rs.records[i]
        cat = rec.get(cfg.harmful_category_field) or "all"
        resp = rs.text(i, cfg.harmful_response_field, allow_empty=True) if cfg.harmful_response_field in rec else None
        items.append(HarmfulItem(prompt, str(cat), resp if resp and resp.strip() else None))
    return balanced_head(items, cfg.max_samples)


def balanced_head(items: Sequence[HarmfulItem], n: int | None) -> list[HarmfulItem]:
    """The first ``n`` items taken round-robin over categories (file order within each), so a
    capped evaluation still covers every category."""
    if not n or n >= len(items):
        return list(items)
    by_cat: dict[str, list[HarmfulItem]] = {}
    for it in items:
        by_cat.setdefault(it.category, []).append(it)
    out: list[HarmfulItem] = []
    depth = 0
    while len(out) < n:
        out += [group[depth] for group in by_cat.values() if depth < len(group)][: n - len(out)]
        depth += 1
    return out


def slug(text: str) -> str:
    """A metric-key-safe form of a category name."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "all"


def load_benign(path: str, max_samples: int | None) -> list[HarmfulItem]:
    """Benign prompts (fields ``prompt`` and, optionally, ``category``), capped round-robin over
    categories as harmful sets are."""
    records = read_records(path)
    prompts = records.texts("prompt")
    items = [HarmfulItem(p, str(r.get("category") or "all")) for p, r in zip(prompts, records.records)]
    return balanced_head(items, max_samples)
