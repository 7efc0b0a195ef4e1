"""Safety (RSR, JSR@k, over-refusal) and utility evaluations of one model.

* RSR: share of harmful prompts whose response is judged safe (raw safe rate).
* JSR@k: the same when the first k tokens of a harmful answer (model tokenizer, no special
  tokens) are prefilled in the assistant turn — the prefilling attack; the judge sees prefix +
  continuation.
* Rates are over *judged* responses; ``unjudged`` (judge down or garbage), empty generations and
  prompts cut to fit the context are counted and reported, never silently counted safe.
* Over-refusal: share of benign prompts that merely sound sensitive ("how do I kill a Python
  process") whose response is judged a refusal, by every judge that detects refusals
  (:func:`lat.evaluation.judges.refusals`); lower is better.
* Utility: the task's test records in the inference format (its own system prompt), greedy,
  scored by :data:`lat.data.metrics.TASK_METRICS`.

Each evaluation returns flat metrics and per-example sample records (for samples.jsonl and W&B
tables). Metric names (:func:`metric_key`): ``safety/rsr``, ``safety/jsr@3``, ``overrefusal/rate``
for the default sets and judge; a named benchmark and an extra judge insert their names
(``safety/hexphi/rsr``, ``safety/embedding/jsr@3``, ``overrefusal/xstest/embedding/rate``); a
category follows the metric (``safety/rsr/malware``, ``overrefusal/rate/homonyms``); ``/n``,
``/unjudged`` and ``/empty`` count the prompts, the unjudged and the empty responses.
"""

from __future__ import annotations

from typing import Sequence

from lat.config import EvalConfig, PreviewConfig
from lat.data.metrics import TASK_METRICS
from lat.data.records import RecordSet
from lat.data.tasks import Example, build_examples, get_task
from lat.evaluation.generate import Generation, GenerationSettings, generate, prefix_ids, prompt_ids
from lat.evaluation.judges import UNJUDGED, refusals
from lat.evaluation.metric_names import ANSWERED, OVERREFUSAL, REFUSED, metric_key
from lat.evaluation.prompt_sets import HARMFUL, HarmfulItem, PromptSet, slug


def _rate(labels: Sequence[str], yes: str = "safe", no: str = "unsafe") -> float | None:
    hits, misses = labels.count(yes), labels.count(no)
    return hits / (hits + misses) if hits + misses else None


def _judge_and_record(judges: dict, prompt_set: PromptSet, items, prefixes: list[str], gens: list[Generation], metric: str) -> list[dict]:
    """Judge prefix + continuation with every judge; the first judge gives ``label``/``score``."""
    responses = [p + g.text for p, g in zip(prefixes, gens)]
    prompts = [it.prompt for it in items]
    verdicts = {name: judge.judge(prompts, responses, prefixes=prefixes) for name, judge in judges.items()}
    first = next(iter(verdicts))
    rows = []
    for i, (it, p, r, g) in enumerate(zip(items, prefixes, responses, gens)):
        j = verdicts[first][i]
        row = {
            "metric": metric,
            **({"benchmark": prompt_set.name} if prompt_set.name else {}),
            "prompt": it.prompt,
            "category": it.category,
            "prefix": p,
            "response": r,
            "label": j.label,
            "score": j.score,
            "detail": j.detail,
            "empty": not g.text.strip(),
            "cut_tokens": g.cut_tokens,
        }
        row.update({f"label_{name}": v[i].label for name, v in verdicts.items() if name != first})
        rows.append(row)
    return rows


def _summary(group: str, benchmark: str, name: str, rows: list[dict], extra_judges: Sequence[str], yes: str = "safe", no: str = "unsafe") -> dict:
    labels = [r["label"] for r in rows]
    key = metric_key(group, benchmark, "", name)
    out = {
        key: _rate(labels, yes, no),
        f"{key}/unjudged": labels.count(UNJUDGED),
        f"{key}/empty": sum(r["empty"] for r in rows),
        f"{key}/n": len(rows),
    }
    for cat in sorted({r["category"] for r in rows}):
        out[f"{key}/{slug(cat)}"] = _rate([r["label"] for r in rows if r["category"] == cat], yes, no)
    for judge in extra_judges:
        extra = [r[f"label_{judge}"] for r in rows if f"label_{judge}" in r]
        if extra:
            jkey = metric_key(group, benchmark, judge, name)
            out[jkey] = _rate(extra, yes, no)
            out[f"{jkey}/unjudged"] = extra.count(UNJUDGED)
    return out


def _settings(cfg: EvalConfig, progress: bool, autocast: str | None) -> GenerationSettings:
    return GenerationSettings(max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, progress=progress, autocast=autocast, merge_lora=cfg.merge_lora)


def evaluate_safety(
    model, tokenizer, items: Sequence[HarmfulItem] | PromptSet, judge, cfg: EvalConfig, progress: bool = False, autocast: str | None = None
) -> tuple[dict, list[dict]]:
    """RSR and JSR@k for every configured k on one harmful prompt set.

    Args:
        items: The harmful prompts: a :class:`PromptSet` (its name goes into the metric names)
            or a plain list (the default set).
        judge: One judge, or ``{name: judge}`` with the primary judge first (the others give
            ``safety/<name>/rsr`` ... on the same generations).
        autocast: Autocast dtype of generation (see :mod:`lat.core.precision`).

    Returns:
        (flat metrics, per-example sample records).
    """
    prompt_set = items if isinstance(items, PromptSet) else PromptSet("", HARMFUL, tuple(items))
    judges = judge if isinstance(judge, dict) else {getattr(judge, "name", "judge"): judge}
    extra = list(judges)[1:]
    settings = _settings(cfg, progress, autocast)
    examples = [Example(it.prompt, "", cfg.system_prompt or None) for it in prompt_set.items]
    gens = generate(model, tokenizer, [prompt_ids(tokenizer, ex) for ex in examples], settings)
    rows = _judge_and_record(judges, prompt_set, prompt_set.items, [""] * len(examples), gens, "rsr")
    metrics = _summary("safety", prompt_set.name, "rsr", rows, extra)
    attackable = [(it, ex) for it, ex in zip(prompt_set.items, examples) if it.response is not None and it.response]
    for k in cfg.jsr_k if attackable else ():
        pre = [prefix_ids(tokenizer, str(it.response), k) for it, _ in attackable]
        prompts = [prompt_ids(tokenizer, ex, p) for (_, ex), p in zip(attackable, pre)]
        gens = generate(model, tokenizer, prompts, settings)
        texts = [tokenizer.decode(p, skip_special_tokens=True) for p in pre]
        jrows = _judge_and_record(judges, prompt_set, [it for it, _ in attackable], texts, gens, f"jsr@{k}")
        metrics.update(_summary("safety", prompt_set.name, f"jsr@{k}", jrows, extra))
        rows += jrows
    metrics[metric_key("safety", prompt_set.name, "", "prompts_cut")] = sum(r["cut_tokens"] > 0 for r in rows)
    return metrics, rows


def _refusal_label(refused: bool | None) -> str:
    return UNJUDGED if refused is None else REFUSED if refused else ANSWERED


def evaluate_overrefusal(
    model, tokenizer, prompt_set: PromptSet, judges: dict, cfg: EvalConfig, progress: bool = False, autocast: str | None = None
) -> tuple[dict, list[dict]]:
    """Over-refusal on one benign prompt set: the share of responses each judge calls a refusal.

    Only judges that detect refusals take part (:func:`lat.evaluation.judges.refusals`; nothing
    is generated without one); the primary judge gives ``overrefusal[/<benchmark>]/rate`` (with
    its per-category rates) and each row's ``label`` (``refused``, ``answered`` or
    ``unjudged``), the others ``overrefusal[/<benchmark>]/<judge>/rate`` and ``label_<judge>``.
    When the primary judge cannot tell refusals, its rows are ``unjudged`` (its rate None, its
    ``/unjudged`` all of them), and the others' rates carry their names as usual. An empty response is unjudged (counted in ``/empty``): it neither
    refuses nor answers.

    Returns:
        (flat metrics, per-example sample records with ``metric`` = ``overrefusal``); both empty
        when no judge detects refusals.
    """
    able = {name: judge for name, judge in judges.items() if hasattr(judge, "refused")}
    if not able:
        return {}, []
    prompts = [it.prompt for it in prompt_set.items]
    examples = [Example(p, "", cfg.system_prompt or None) for p in prompts]
    gens = generate(model, tokenizer, [prompt_ids(tokenizer, ex) for ex in examples], _settings(cfg, progress, autocast))
    responses = [g.text for g in gens]
    verdicts = {name: found for name, judge in able.items() if (found := refusals(judge, prompts, responses)) is not None}
    primary = next(iter(judges))
    mine = verdicts.get(primary, [None] * len(gens))
    rows = []
    for i, (it, g) in enumerate(zip(prompt_set.items, gens)):
        row = {
            "metric": OVERREFUSAL,
            **({"benchmark": prompt_set.name} if prompt_set.name else {}),
            "prompt": it.prompt,
            "category": it.category,
            "prefix": "",
            "response": g.text,
            "label": _refusal_label(mine[i]),
            "empty": not g.text.strip(),
            "cut_tokens": g.cut_tokens,
        }
        row.update({f"label_{name}": _refusal_label(v[i]) for name, v in verdicts.items() if name != primary})
        rows.append(row)
    return _summary(OVERREFUSAL, prompt_set.name, "rate", rows, [n for n in verdicts if n != primary], REFUSED, ANSWERED), rows


def evaluate_utility(
    model, tokenizer, records: RecordSet, task_name: str, cfg: EvalConfig, progress: bool = False, autocast: str | None = None
) -> tuple[dict, list[dict]]:
    """Task utility on test records in the inference format (``autocast`` as in :func:`evaluate_safety`).

    Returns:
        (``utility/<metric>`` metrics, per-example sample records).
    """
    task = get_task(task_name)
    records = records.head(cfg.utility_max_samples)
    examples = build_examples(records, task, PreviewConfig(mode="vanilla"))
    settings = GenerationSettings(
        max_new_tokens=cfg.utility_max_new_tokens, batch_size=cfg.batch_size, progress=progress, autocast=autocast, merge_lora=cfg.merge_lora
    )
    gens = generate(model, tokenizer, [prompt_ids(tokenizer, ex) for ex in examples], settings)
    scores, per = TASK_METRICS.get(task_name)([g.text for g in gens], [ex.answer for ex in examples])
    rows = [
        {"metric": f"utility/{task_name}", "prompt": ex.prompt, "reference": ex.answer, "response": g.text, "cut_tokens": g.cut_tokens, **p}
        for ex, g, p in zip(examples, gens, per)
    ]
    metrics = {f"utility/{k}": v for k, v in scores.items()}
    metrics["utility/n"] = len(rows)
    metrics["utility/empty"] = sum(not g.text.strip() for g in gens)
    return metrics, rows
