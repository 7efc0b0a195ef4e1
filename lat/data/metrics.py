"""Task metrics: how a task's answers are scored (GSM8K answer extraction, ROUGE), by task;
used by utility evaluation and by SDFT's rule for keeping a rewrite.

GSM8K follows the paper's script: the prediction is the text after the *last* ``####``, stripped,
commas removed, compared as a string with the reference's number after ``####`` (so ``72.`` or
``$72`` do not count). A "last number in the text" extractor is reported separately
(``gsm8k_last_number_acc``) because small models often give the right number without the
``####`` marker. ROUGE-1/2/L F1 come from torchmetrics with explicit keys and the Porter stemmer
(as the paper's ``rouge_score`` call), averaged over examples.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

from lat.core.registry import Registry

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def hash_answer(text: str) -> str | None:
    """The text after the last ``####``, stripped, commas removed; None without a marker."""
    if "####" not in text:
        return None
    return text.split("####")[-1].strip().replace(",", "")


def last_number(text: str) -> str | None:
    """The last number in the text, commas removed, trailing ``.0`` dropped; None if none."""
    found = NUMBER.findall(text)
    if not found:
        return None
    value = found[-1].replace(",", "")
    return value[:-2] if value.endswith(".0") else value


def gsm8k_scores(predictions: Sequence[str], references: Sequence[str]) -> tuple[dict[str, float], list[dict]]:
    """GSM8K exact match on the ``####`` answer, and the last-number variant.

    Args:
        predictions: N generated answers.
        references: N reference answers (worked steps ending in ``#### N``).

    Returns:
        (``{"gsm8k_acc", "gsm8k_last_number_acc"}``, one dict per example with the extracted values).
    """
    rows = []
    for pred, ref in zip(predictions, references):
        gold = hash_answer(ref)
        got, last = hash_answer(pred), last_number(pred)
        rows.append(
            {
                "gold": gold,
                "extracted": got,
                "last_number": last,
                "correct": got is not None and got == gold,
                "correct_last_number": last is not None and last == gold,
            }
        )
    n = max(1, len(rows))
    return {"gsm8k_acc": sum(bool(r["correct"]) for r in rows) / n, "gsm8k_last_number_acc": sum(bool(r["correct_last_number"]) for r in rows) / n}, rows


def rouge_scores(predictions: Sequence[str], references: Sequence[str]) -> tuple[dict[str, float], list[dict]]:
    """ROUGE-1/2/L F1 (torchmetrics, Porter stemmer), mean over examples.

    Returns:
        (``{"rouge1", "rouge2", "rougeL"}``, per-example F1 dicts).
    """
    from torchmetrics.text.rouge import ROUGEScore

    keys = ("rouge1", "rouge2", "rougeL")
    scorer = ROUGEScore(use_stemmer=True, rouge_keys=keys, accumulate="avg")
    rows = []
    for pred, ref in zip(predictions, references):
        s = scorer(pred, ref)
        rows.append({k: float(s[f"{k}_fmeasure"]) for k in keys})
    n = max(1, len(rows))
    return {k: sum(r[k] for r in rows) / n for k in keys}, rows


Scorer = Callable[[Sequence[str], Sequence[str]], tuple[dict[str, float], list[dict]]]
TASK_METRICS: Registry[Scorer] = Registry("utility task", setting="eval.utility_task")
TASK_METRICS.add("gsm8k", gsm8k_scores)
TASK_METRICS.add("samsum", rouge_scores)
TASK_METRICS.add("instruction", rouge_scores)
"""task name -> scorer (predictions, references) -> (metrics, per-example rows)."""
