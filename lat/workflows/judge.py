"""`lat judge`: judge existing generations again, with any judges, without generating again.

Reads one or more record files (a run's ``samples.jsonl``, or any jsonl / json / csv with
``prompt`` and ``response``, optionally ``prefix`` and ``metric``), judges every response with
each judge asked (the config's default judge when none is named), and writes each input record
plus ``judge/<name>``: ``safe``, ``unsafe`` or ``unjudged``. A prefilled response is judged as
the prefix followed by its continuation (a run's samples already hold it so: a ``response`` that
starts with its ``prefix`` is taken as it is), so a refusal after a harmful opening is safe and a
harmful continuation of it is not.

Utility records of a run's samples (``metric`` = ``utility/...``) are copied unjudged. Over-refusal
records (``metric`` = ``overrefusal``: benign prompts) are asked whether the response
refuses, and get ``refused``, ``answered`` or ``unjudged`` (unjudged too from a judge that cannot
tell refusals).

Where records carry ``human_score`` (the paper's 1-5 rubric) or ``human_label``, it also reports
each judge's agreement (:mod:`lat.evaluation.agreement`) per metric (``rsr``, ``jsr@k``, ...), at
the paper's threshold and, with scores, the strict one; over-refusal records with
``human_refusal`` (``full``, ``partial``, ``none``) give the judge's refusal agreement.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from lat.config import Config
from lat.core.errors import UserError
from lat.data.records import read_records, write_records
from lat.evaluation.agreement import THRESHOLDS, agreement, human_refused, human_verdict, refusal_agreement
from lat.evaluation.judges import JUDGES, UNJUDGED, build_judge, refusals
from lat.evaluation.metric_names import ANSWERED, OVERREFUSAL, REFUSED, is_safety_metric

ALL = "all"
"""The metric of records that name none."""


@dataclass
class Judged:
    """What ``lat judge`` produced.

    Attributes:
        records: Every input record plus ``judge/<name>`` for each judge.
        agreement: judge -> threshold -> metric -> :func:`lat.evaluation.agreement.agreement`
            (empty without human labels).
    """

    records: list[dict]
    agreement: dict[str, dict[str, dict[str, dict]]]
    refusal: dict[str, dict] = dataclasses.field(default_factory=dict)
    """judge -> :func:`lat.evaluation.agreement.refusal_agreement` on the over-refusal records
    with ``human_refusal`` (empty without them)."""


def read_generations(paths: Sequence[str | Path]) -> list[dict]:
    """The records of ``paths``, each with a string ``prompt`` and ``response`` (``prefix``, when
    present, a string too).

    Raises:
        UserError: A file that cannot be read, or a record without those fields (one line
            naming the file, record and field).
    """
    out = []
    for path in paths:
        records = read_records(path)
        for i in range(len(records)):
            records.text(i, "prompt", allow_empty=True)
            records.text(i, "response", allow_empty=True)
            if "prefix" in records.records[i]:
                records.text(i, "prefix", allow_empty=True)
            out.append(records.records[i])
    return out


def judged_text(record: dict) -> str:
    """The text a judge reads: the prefix and its continuation."""
    prefix, response = record.get("prefix") or "", record["response"]
    return response if response.startswith(prefix) else prefix + response


def judge_records(records: list[dict], cfg: Config, names: Sequence[str]) -> Judged:
    """Judge ``records`` with the judges ``names`` (configured by ``eval.judge``).

    Args:
        records: From :func:`read_generations`.
        cfg: The resolved config (its ``eval.judge`` settings configure every judge).
        names: Judge names (empty: ``eval.judge.name``).
    """
    names = list(dict.fromkeys(names or [cfg.eval.judge.name]))
    for name in names:
        JUDGES.check(name, "--judge")
    # records without a metric are any jsonl of prompts and responses; utility rows are not judged
    harmful = [i for i, r in enumerate(records) if r.get("metric") != OVERREFUSAL and (r.get("metric") is None or is_safety_metric(r.get("metric")))]
    benign = [i for i, r in enumerate(records) if r.get("metric") == OVERREFUSAL]
    out = [dict(r) for r in records]
    for name in names:
        judge = build_judge(dataclasses.replace(cfg.eval.judge, name=name))
        verdicts = judge.judge(
            [records[i]["prompt"] for i in harmful], [judged_text(records[i]) for i in harmful], prefixes=[records[i].get("prefix") or "" for i in harmful]
        )
        for i, v in zip(harmful, verdicts):
            out[i][f"judge/{name}"] = v.label
        refused = refusals(judge, [records[i]["prompt"] for i in benign], [judged_text(records[i]) for i in benign]) if benign else []
        for n, i in enumerate(benign):
            verdict = refused[n] if refused is not None else None
            out[i][f"judge/{name}"] = UNJUDGED if verdict is None else REFUSED if verdict else ANSWERED
    return Judged(out, {name: judge_agreement(out, name) for name in names}, {name: judge_refusal_agreement(out, name) for name in names})


def judge_refusal_agreement(records: list[dict], name: str) -> dict:
    """Refusal agreement of judge ``name`` on the over-refusal records with ``human_refusal``
    (empty without any)."""
    rows = [(r, h) for r in records if r.get("metric") == OVERREFUSAL and (h := human_refused(r)) is not None]
    return refusal_agreement([r[f"judge/{name}"] for r, _ in rows], [h for _, h in rows]) if rows else {}


def judge_agreement(records: list[dict], name: str) -> dict[str, dict[str, dict]]:
    """threshold -> metric -> agreement of judge ``name`` with the human labels of ``records``
    (every metric and ``all``; thresholds without any human label left out)."""
    out: dict[str, dict[str, dict]] = {}
    for threshold, unsafe_from in THRESHOLDS.items():
        labelled = [(r, h) for r in records if f"judge/{name}" in r and r.get("metric") != OVERREFUSAL and (h := human_verdict(r, unsafe_from)) is not None]
        if not labelled:
            continue
        metrics = sorted({str(r.get("metric") or ALL) for r, _ in labelled})
        table = {}
        for metric in dict.fromkeys([*metrics, ALL]):
            rows = [(r, h) for r, h in labelled if metric == ALL or str(r.get("metric") or ALL) == metric]
            table[metric] = agreement([r[f"judge/{name}"] for r, _ in rows], [h for _, h in rows])
        out[threshold] = table
    return out


def agreement_table(result: Judged) -> str:
    """The agreement of every judge as a Markdown table (empty without human labels)."""

    def fmt(v) -> str:
        return "" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = []
    for judge, by_threshold in result.agreement.items():
        for threshold, by_metric in by_threshold.items():
            for metric, a in by_metric.items():
                cells = [judge, threshold, metric, *(fmt(a[k]) for k in ("n", "unjudged", "accuracy", "false_safe", "false_unsafe", "kappa"))]
                lines.append("| " + " | ".join(cells) + " |")
    text = ""
    if lines:
        head = "| judge | threshold | metric | n | unjudged | accuracy | false-safe | false-unsafe | kappa |\n|---|---|---|---|---|---|---|---|---|\n"
        text = head + "\n".join(lines) + "\n"
    refusal = [
        "| " + " | ".join([judge, *(fmt(a[k]) for k in ("n", "unjudged", "accuracy", "false_refusal", "missed_refusal", "kappa"))]) + " |"
        for judge, a in result.refusal.items()
        if a
    ]
    if refusal:
        head = "| judge | over-refusal n | unjudged | accuracy | false refusal | missed refusal | kappa |\n|---|---|---|---|---|---|---|\n"
        text += ("\n" if text else "") + head + "\n".join(refusal) + "\n"
    return text


def judge_files(paths: Sequence[str | Path], out: str | Path, cfg: Config, names: Sequence[str]) -> Judged:
    """Read, judge and write: the whole of ``lat judge``.

    Raises:
        UserError: Unreadable input, unknown judge, or ``out`` among the inputs.
    """
    out = Path(out)
    if any(Path(p).resolve() == out.resolve() for p in paths):
        raise UserError(f"{out}: also an input; write the judged records to another file")
    if out.is_dir():
        raise UserError(f"{out}: is a directory; --out names the file to write")
    result = judge_records(read_generations(paths), cfg, names)
    write_records(out, result.records)
    return result
