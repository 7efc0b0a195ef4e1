"""SDFT, self-distillation fine-tuning (Yang et al. 2024): train on the starting model's own rewrites.

Before training, the starting (seed) model rewrites every training answer, prompted with the
instruction and the reference answer as a guide. A rewrite replaces the reference only where a
task rule says it still says the same thing; everywhere else the reference answer is kept:

* ``gsm8k``: the final answer after ``####`` must equal the reference's;
* ``samsum`` and ``instruction``: ROUGE-1 F1 against the reference >= ``data.sdft_rouge_threshold``.

Rewrites are generated greedily once per model and data and cached (``$LAT_CACHE``); the
preview strategy is applied to the rewritten answers afterwards, as to any training data.
"""

from __future__ import annotations

from typing import Callable, Sequence

from lat.data.metrics import hash_answer, rouge_scores
from lat.data.records import RecordSet
from lat.data.tasks import Example, Task

TEMPLATE = (
    "Below is an instruction that describes a task, along with a reference answer. "
    "Using the reference answer as a guide, write your own response.\n\n"
    "### Instruction:\n{instruction}\n\n### Reference answer:\n{answer}\n\n### Response:\n"
)
"""The rewrite request (one user turn), after SDFT's distillation template."""


def same_final_answer(reference: str, rewrite: str, threshold: float) -> bool:
    """GSM8K rule: both have a ``####`` answer and they are equal (commas ignored)."""
    gold = hash_answer(reference)
    return gold is not None and hash_answer(rewrite) == gold


def rouge_close(reference: str, rewrite: str, threshold: float) -> bool:
    """Summaries and free text: ROUGE-1 F1 of the rewrite against the reference >= threshold."""
    scores, _ = rouge_scores([rewrite], [reference])
    return scores["rouge1"] >= threshold


KEEP_RULES: dict[str, Callable[[str, str, float], bool]] = {
    "gsm8k": same_final_answer,
    "samsum": rouge_close,
    "instruction": rouge_close,
}
"""Task name -> whether a rewrite may replace the reference answer."""


def keep_rewrite(task: str, reference: str, rewrite: str, threshold: float) -> bool:
    """Whether ``rewrite`` replaces ``reference`` (non-empty and the task's rule holds)."""
    return bool(rewrite.strip()) and KEEP_RULES.get(task, rouge_close)(reference, rewrite, threshold)


def rewrite_answers(
    instructions: Sequence[str],
    answers: Sequence[str],
    task: Task,
    answer_fn: Callable[[list[Example], int], list[str]],
    max_new_tokens: int,
    threshold: float,
    system: str | None,
) -> tuple[list[str], int]:
    """The training answers after SDFT: each the model's rewrite where kept, else the reference.

    Args:
        instructions: N raw instructions (the task's input field).
        answers: N reference answers.
        task: The task (its user turn formats the instruction, its name picks the keep rule).
        answer_fn: (N prompts, max_new_tokens) -> N greedy answers of the starting model.
        max_new_tokens: Tokens per rewrite.
        threshold: ROUGE-1 F1 threshold of the ROUGE rule.
        system: System prompt of the rewrite requests (None = none).

    Returns:
        (N answers, how many are rewrites).
    """
    prompts = [Example(TEMPLATE.format(instruction=task.user_turn(i), answer=a), "", system) for i, a in zip(instructions, answers)]
    rewrites = [r.strip() for r in answer_fn(prompts, max_new_tokens)]
    kept = [keep_rewrite(task.name, a, r, threshold) for a, r in zip(answers, rewrites)]
    return [r if k else a for a, r, k in zip(answers, rewrites, kept)], sum(kept)


def replace_field(records: RecordSet, output_field: str, answers: Sequence[str]) -> RecordSet:
    """``records`` with ``output_field`` replaced by ``answers`` (locations kept)."""
    new = [{**r, output_field: a} for r, a in zip(records.records, answers)]
    return RecordSet(records.source, new, list(records.locations))
