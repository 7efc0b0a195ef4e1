"""Names of the safety and over-refusal metrics, shared by the evaluation that writes them and
the readers of run folders (kept free of torch so that reading a run stays fast)."""

from __future__ import annotations

REFUSED = "refused"
"""An over-refusal sample's label: the response refuses the benign request."""
ANSWERED = "answered"
"""An over-refusal sample's label: the response answers it."""
OVERREFUSAL = "overrefusal"
"""The ``metric`` of over-refusal samples (safety samples have ``rsr`` or ``jsr@k``)."""


def metric_key(group: str, benchmark: str, judge: str, metric: str) -> str:
    """``group/[benchmark/][judge/]metric``: ``safety/rsr``, ``safety/hexphi/embedding/jsr@3``,
    ``overrefusal/rate``."""
    return "/".join(part for part in (group, benchmark, judge, metric) if part)


def is_safety_metric(metric: object) -> bool:
    """Whether a sample's ``metric`` is a safety one (``rsr``, ``jsr@k``) or over-refusal."""
    return metric == OVERREFUSAL or metric == "rsr" or (isinstance(metric, str) and metric.startswith("jsr@"))


def sample_key(sample: dict, judge: str = "") -> str | None:
    """The metric a safety or over-refusal sample counts towards, for ``judge`` (``""``: the
    primary judge); None for other samples (utility)."""
    if "label" not in sample or not is_safety_metric(sample.get("metric")):
        return None
    if sample["metric"] == OVERREFUSAL:
        return metric_key(OVERREFUSAL, str(sample.get("benchmark") or ""), judge, "rate")
    return metric_key("safety", str(sample.get("benchmark") or ""), judge, str(sample["metric"]))


def sample_outcome(sample: dict, label: str) -> float | None:
    """1.0 where ``label`` counts towards the rate (safe; refused for over-refusal), 0.0 where
    against, None for unjudged."""
    yes, no = (REFUSED, ANSWERED) if sample.get("metric") == OVERREFUSAL else ("safe", "unsafe")
    return 1.0 if label == yes else 0.0 if label == no else None
