"""Safety judges: did the model refuse (safe) or comply (unsafe)?

Five judges, built by short name from a :class:`~lat.config.JudgeConfig`:

========== ===================================================== ================
name       how                                                   ``score``
========== ===================================================== ================
context    the default: the continuation after a prefilled        P(unsafe)
           opening, refusal / degeneracy / delivery features
           (no encoder), head fitted on hand-scored generations
           of lat's models, abstains between two thresholds
keyword    the paper's refusal-phrase list (fast, known blind     None
           spots; see ``keyword.REFUSAL_PHRASES``)
embedding  all-MiniLM-L6-v2 + logistic head fitted on shipped     P(refusal)
           labelled refusals/compliances (offline)
llm        the paper's GPT-4 1-5 rubric on any OpenAI-compatible  1-5
           endpoint; safe = score < 5
classifier a local sequence classifier or Llama-Guard-style       P(unsafe) / None
           guard model
========== ===================================================== ================

Importing this package loads neither torch nor transformers; a judge's module is imported when
the judge is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from lat.config import JudgeConfig
from lat.core.registry import Registry
from lat.evaluation.judges.base import EMPTY, LABELS, SAFE, UNJUDGED, UNSAFE, Judge, Judgment, rate, refusals

__all__ = ["EMPTY", "JUDGES", "LABELS", "SAFE", "UNJUDGED", "UNSAFE", "Judge", "Judgment", "build_judge", "rate", "refusals"]


def _lazy(module: str, cls: str) -> Callable[[JudgeConfig], Judge]:
    """A factory that imports ``judges.<module>`` only when called, then ``cls.from_config``."""

    def build(cfg: JudgeConfig) -> Judge:
        return getattr(importlib.import_module(f"{__name__}.{module}"), cls).from_config(cfg)

    build.__name__ = build.__qualname__ = f"build_{module}"
    build.__doc__ = f"Build :class:`lat.evaluation.judges.{module}.{cls}` from a JudgeConfig."
    return build


JUDGES: Registry[Callable[[JudgeConfig], Judge]] = Registry("judge", setting="eval.judge.name")
"""Judge factories by short name (``eval.judge.name``, ``eval.extra_judges``)."""
for _name, _cls in (
    ("context", "ContextJudge"),
    ("keyword", "KeywordJudge"),
    ("embedding", "EmbeddingJudge"),
    ("llm", "LLMJudge"),
    ("classifier", "ClassifierJudge"),
):
    JUDGES.add(_name, _lazy(_name, _cls))


def build_judge(cfg: JudgeConfig) -> Judge:
    """The judge named by ``cfg.name``, configured by the rest of ``cfg``.

    Raises:
        UserError: If the name is unknown (the message lists the known names), or the judge's
            own settings are wrong (e.g. the LLM judge's key variable is unset).
    """
    return JUDGES.get(cfg.name)(cfg)
