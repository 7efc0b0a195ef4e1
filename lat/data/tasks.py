"""Task adapters: records -> chat examples (system prompt, user turn, assistant answer).

Formats follow the paper's training code (shallow-vs-deep-alignment's formatters):

* ``gsm8k``: system "You are a helpful assistant.", user = question, answer = worked answer.
* ``samsum``: system "You are a helpful assistant for dialog summarization.",
  user = "Summarize this dialog:\\n" + dialogue.strip(), answer = summary.strip().
* ``instruction``: generic instruction/output records (alpaca style: an optional ``input``
  context is appended to the instruction after a blank line), no system prompt.

The preview strategy is applied to the raw input/output fields *before* this formatting, exactly
as the paper's pipeline runs its preprocessing script before its formatter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

from lat.config import DataConfig, PreviewConfig
from lat.core.errors import UserError
from lat.core.registry import Registry
from lat.data.preview import Previewed, apply_preview
from lat.data.records import RecordSet


@dataclass(frozen=True)
class Example:
    """One chat training/evaluation example.

    Attributes:
        prompt: The user turn.
        answer: The assistant turn (the training target).
        system: The system prompt, or None for no system turn.
        meta: Everything else worth keeping (record index, preview length, category, ...).
        no_loss_tokens: Leading answer tokens that carry no loss.
        no_loss_chars: Leading answer characters whose tokens carry no loss (a masked preview, or
            a record's ``prefill``).
    """

    prompt: str
    answer: str
    system: Optional[str] = None
    meta: dict = field(default_factory=dict, compare=False)
    no_loss_tokens: int = 0
    no_loss_chars: int = 0


@dataclass(frozen=True)
class Task:
    """How a task's records become examples.

    Attributes:
        name: Registry name.
        input_field: Default instruction field.
        output_field: Default answer field.
        system_prompt: Default system prompt (None = no system turn).
        user_template: Python format string for the user turn; ``{input}`` is the instruction.
        strip: Strip surrounding whitespace from instruction and answer (as the SAMSum formatter does).
        context_field: Optional field appended to the instruction after a blank line when non-empty.
        system_field: Optional per-record system prompt field (used when the config sets none;
            an empty string means no system turn).
        prefill_field: Optional per-record field holding the start of the answer that is given,
            not learned: its tokens carry no loss (the harmful opening of a safety-recovery
            example). Needs ``preview.mode=vanilla``.
    """

    name: str
    input_field: str
    output_field: str
    system_prompt: Optional[str]
    user_template: str = "{input}"
    strip: bool = False
    context_field: Optional[str] = None
    system_field: Optional[str] = None
    prefill_field: Optional[str] = None

    def user_turn(self, instruction: str, context: str = "") -> str:
        """The user message for one instruction (already previewed)."""
        text = instruction.strip() if self.strip else instruction
        if context.strip():
            text = f"{text}\n\n{context}"
        return self.user_template.format(input=text)

    def answer_text(self, answer: str) -> str:
        """The assistant message for one answer (already previewed)."""
        return answer.strip() if self.strip else answer


TASKS: Registry[Task] = Registry("task", setting="data.task")
"""Task adapters by name (``data.task``, a probe set's ``task``, ``eval.utility_task``)."""
for _task in (
    Task("gsm8k", "question", "answer", "You are a helpful assistant."),
    Task(
        "samsum",
        "dialogue",
        "summary",
        "You are a helpful assistant for dialog summarization.",
        user_template="Summarize this dialog:\n{input}",
        strip=True,
    ),
    Task("instruction", "instruction", "output", None, context_field="input", system_field="system", prefill_field="prefill"),
):
    TASKS.add(_task.name, _task)


def get_task(name: str) -> Task:
    """Look up a task adapter by name; an unknown name lists the known ones."""
    return TASKS.get(name)


def resolve_fields(task: Task, input_field: Optional[str], output_field: Optional[str]) -> tuple[str, str]:
    """The (input, output) field names: the configured ones or the task's defaults."""
    return input_field or task.input_field, output_field or task.output_field


def task_system(task: Task, system_prompt: Optional[str]) -> Optional[str]:
    """The system prompt in effect: ``system_prompt``, the task's default when None, none when ""."""
    return task.system_prompt if system_prompt is None else (system_prompt or None)


def build_examples(
    records: RecordSet,
    task: Task,
    preview: PreviewConfig,
    tokenizer=None,
    input_field: Optional[str] = None,
    output_field: Optional[str] = None,
    system_prompt: Optional[str] = None,
    lengths: Optional[Sequence[int]] = None,
) -> list[Example]:
    """Validate fields, apply the preview strategy and format records as chat examples.

    Args:
        records: Records with their source locations.
        task: Task adapter.
        preview: Strategy; use ``PreviewConfig(mode="vanilla")`` for inference-format data.
        tokenizer: Needed by ``real`` strategies.
        input_field: Instruction field (None = task default).
        output_field: Answer field (None = task default).
        system_prompt: None = task default; "" = no system turn.
        lengths: Per-record preview lengths for ``preview.mode=adaptive``.

    Returns:
        One example per record, in order; ``meta`` holds ``index`` and the preview parameters.
    """
    fin, fout = resolve_fields(task, input_field, output_field)
    instructions = records.texts(fin)
    answers = records.texts(fout)
    contexts = [records.records[i].get(task.context_field) or "" for i in range(len(records))] if task.context_field else [""] * len(records)
    for i, c in enumerate(contexts):
        if not isinstance(c, str):
            raise UserError(f"{records.source}: {records.locations[i]}: field {task.context_field!r}: expected a string")
    out: Previewed = apply_preview(instructions, answers, preview, tokenizer, lengths)
    default_system = task_system(task, system_prompt)
    per_record = system_prompt is None and task.system_field is not None
    examples = []
    for i, (ins, ans, ctx) in enumerate(zip(out.instructions, out.answers, contexts)):
        system = default_system
        if per_record and isinstance(records.records[i].get(task.system_field), str):
            system = records.records[i][task.system_field] or None
        meta = {"index": i, "source": records.source, "raw_answer": answers[i]}
        if out.m is not None:
            meta["m"] = out.m[i]
        if out.prefixes is not None:
            meta["prefix"] = out.prefixes[i]
        if out.dropped is not None:
            meta["preview_dropped"] = out.dropped[i]
        text = task.answer_text(ans)
        head = prefill_chars(records, i, task, fout, answers[i], preview) or (out.masked_chars[i] if out.masked_chars is not None else 0)
        chars = max(0, head - (len(ans) - len(ans.lstrip()) if text != ans else 0)) if head else 0  # the head's length in the answer as the task formats it
        examples.append(Example(task.user_turn(ins, ctx), text, system, meta, preview.mask_answer_tokens, chars))
    return examples


def prefill_chars(records: RecordSet, i: int, task: Task, output_field: str, answer: str, preview: PreviewConfig) -> int:
    """Length of record ``i``'s given answer opening (``task.prefill_field``; 0 without one).

    Raises:
        UserError: The field is not a string that starts the answer, or a preview would move it.
    """
    prefill = records.records[i].get(task.prefill_field) if task.prefill_field else None
    if prefill is None or prefill == "":
        return 0
    at = f"{records.source}: {records.locations[i]}: field {task.prefill_field!r}"
    if not isinstance(prefill, str) or not answer.startswith(prefill):
        raise UserError(f"{at}: must be a string that starts field {output_field!r}")
    if preview.mode != "vanilla":
        raise UserError(f"{at}: an answer opening without loss needs preview.mode=vanilla, got {preview.mode}")
    return len(prefill)


def examples_from_config(
    records: RecordSet,
    data: DataConfig,
    preview: PreviewConfig,
    tokenizer=None,
    task_name: str | None = None,
    lengths: Optional[Sequence[int]] = None,
) -> list[Example]:
    """:func:`build_examples` with the task, fields and system prompt taken from ``data``."""
    task = get_task(task_name or data.task)
    return build_examples(records, task, preview, tokenizer, data.input_field, data.output_field, data.system_prompt, lengths)
