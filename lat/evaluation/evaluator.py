"""The Evaluator: what to evaluate (harmful items, judges, utility records), built once from the
eval section, and run on any model (epoch-end callbacks, ``lat eval``, the seed report)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lat.config import EvalConfig, PreviewConfig
from lat.core.errors import UserError
from lat.data.records import RecordSet, read_records, resolve_path
from lat.data.tasks import build_examples, get_task
from lat.evaluation.benchmarks import evaluate_overrefusal, evaluate_safety, evaluate_utility
from lat.evaluation.judges import build_judge
from lat.evaluation.presets import load_benchmark
from lat.evaluation.prompt_sets import BENIGN, HARMFUL, PromptSet, load_benign, load_harmful

SHIPPED_HARMFUL = "pkg:assets/harmful_eval.jsonl"
SHIPPED_OVERREFUSAL = "pkg:assets/overrefusal_prompts.jsonl"
SHIPPED_UTILITY = {"gsm8k": "pkg:assets/arithmetic_test.jsonl"}


def _shipped(spec: str) -> str | None:
    return spec if Path(resolve_path(spec)).is_file() else None


class Evaluator:
    """Safety and utility evaluation as configured (data read and judge built once).

    Args:
        cfg: The eval section.
        autocast: dtype name generation runs under (``bfloat16``), or None for the weights' dtype.
        default_task: Utility task when ``eval.utility_task`` is not set (the training task).
    """

    def __init__(self, cfg: EvalConfig, *, autocast: str | None, default_task: str):
        self.cfg = e = cfg
        self.autocast = autocast
        self.sets: list[PromptSet] = []
        self.judges: dict = {}
        if e.safety:
            path = e.harmful_path or _shipped(SHIPPED_HARMFUL)
            if path is None:
                raise UserError("eval.harmful_path: not set (and no shipped harmful set); or pass eval.safety=false")
            self.sets = [PromptSet("", HARMFUL, tuple(load_harmful(path, e)))]
            if e.overrefusal:
                self.sets.append(PromptSet("", BENIGN, tuple(load_benign(e.overrefusal_path or SHIPPED_OVERREFUSAL, e.max_samples))))
            self.sets += [found for spec in e.benchmarks for found in load_benchmark(spec, e.max_samples)]
            self.judges = {e.judge.name: build_judge(e.judge)}
            for name in e.extra_judges:
                self.judges[name] = build_judge(dataclasses.replace(e.judge, name=name))
        self.utility_task = e.utility_task or default_task
        self.utility_records: RecordSet | None = None
        if e.utility:
            path = e.utility_path or _shipped(SHIPPED_UTILITY.get(self.utility_task, ""))
            if path is None:
                raise UserError(f"eval.utility_path: not set (no shipped test set for task {self.utility_task!r}); or pass eval.utility=false")
            self.utility_records = read_records(path)
            # fields checked now, not after the safety generations
            build_examples(self.utility_records.head(e.utility_max_samples), get_task(self.utility_task), PreviewConfig(mode="vanilla"))

    def safety(self, model, tokenizer, progress: bool = False) -> tuple[dict, list[dict]]:
        """RSR / JSR@k and over-refusal metrics and samples of every prompt set (empty when
        safety is off)."""
        metrics: dict = {}
        samples: list[dict] = []
        for prompt_set in self.sets:
            run = evaluate_safety if prompt_set.kind == HARMFUL else evaluate_overrefusal
            m, s = run(model, tokenizer, prompt_set, self.judges, self.cfg, progress, self.autocast)
            metrics.update(m)
            samples += s
        return metrics, samples

    def utility(self, model, tokenizer, progress: bool = False) -> tuple[dict, list[dict]]:
        """Utility metrics and samples (empty when utility is off)."""
        if self.utility_records is None:
            return {}, []
        return evaluate_utility(model, tokenizer, self.utility_records, self.utility_task, self.cfg, progress, self.autocast)
