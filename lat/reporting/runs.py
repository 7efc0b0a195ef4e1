"""``lat report``: aggregate finished runs into tables and plots.

Runs are found under the given folders (any folder with ``config.yaml`` and ``metrics.json``:
``lat train`` runs, sweep points, the method and seed folders of ``lat run``). Runs are grouped
by the config keys that differ between them, ``run.seed`` excluded, so each group is one
setting measured over seeds; every metric is reported as mean +- std over the group.

Outputs in the report folder: ``report.md`` (the groups table and the paper's Table 1 layout with
the paper's published numbers alongside), ``report.csv`` / ``report.json``, ``pareto.png``
(safety against utility, Pareto front marked), ``kl_by_m.png`` and ``kl_by_prefix.png`` (mean
per-position KL curves across preview lengths and across prefixes, vanilla for reference).
"""

from __future__ import annotations

import difflib
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from lat.core.errors import UserError
from lat.core.fileio import write_json, write_text
from lat.evaluation.agreement import agreement
from lat.reporting.stats import Difference, paired_bootstrap, wilson_interval
from lat.reporting.tables import HEADLINE, judge_of, save_png, write_csv
from lat.runs.read import KL_POSITIONS, Run, find_runs

IGNORED_KEYS = ("run.name", "run.root", "run.resume", "run.seed", "experiment", "train.keep_checkpoint")
TRAINING_SECTIONS = ("preview.", "train.", "lora.", "data.", "align.")
PAPER_TABLE1 = {
    "Seed": (99.39, 90.30, 25.88),
    "Vanilla FT": (82.88, 38.79, 47.83),
    "SDFT": (94.40, 56.97, 32.61),
    "Constrained SFT": (84.25, 43.18, 42.81),
    "LookAhead (real)": (96.67, 55.00, 44.65),
    "LookAhead (virtual)": (98.03, 59.55, 46.24),
}
"""Paper (arXiv 2503.19041) Table 1, averages over GSM8K and SAMSum: RSR, JSR, utility (%)."""


def varying_keys(runs: Sequence[Run]) -> list[str]:
    """Config keys whose values differ between the runs that have them (run folders and
    ``run.seed`` ignored; a preview field is absent from runs whose strategy ignores it)."""
    keys = sorted({k for r in runs for k in r.config} - set(IGNORED_KEYS))
    return [k for k in keys if len({json.dumps(r.config[k], sort_keys=True, default=str) for r in runs if k in r.config}) > 1]


@dataclass
class Group:
    """Runs of one setting (same values of the grouping keys), over seeds."""

    label: str
    values: dict
    trained: bool
    runs: list[Run]

    def stat(self, key: str) -> tuple[float | None, float | None, int]:
        """(mean, sample std or None for one run, n) of a metric over the group's runs."""
        xs = [r.metrics[key] for r in self.runs if key in r.metrics]
        if not xs:
            return None, None, 0
        return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None), len(xs)

    def outcomes(self, key: str) -> dict[str, float]:
        """Per-prompt outcome averaged over the group's runs (prompts every run evaluated)."""
        per_run = [r.outcomes[key] for r in self.runs if key in r.outcomes]
        if not per_run:
            return {}
        items = set.intersection(*(set(o) for o in per_run))
        return {i: statistics.fmean(o[i] for o in per_run) for i in sorted(items)}

    def interval(self, key: str) -> tuple[float, float] | None:
        """95 % Wilson interval of the rate, outcomes pooled over the group's runs."""
        pooled = [v for r in self.runs for v in r.outcomes.get(key, {}).values()]
        return wilson_interval(sum(pooled), len(pooled)) if pooled else None

    def mean_curve(self, probe: str) -> dict[int, float]:
        """Mean KL per position over the group's runs that have ``probe``."""
        curves = [r.kl[probe] for r in self.runs if probe in r.kl]
        positions = sorted({p for c in curves for p in c})
        return {p: statistics.fmean(c[p] for c in curves if p in c) for p in positions}


def short_key(key: str) -> str:
    return key.split(".", 1)[1] if key.startswith("preview.") else key


def show_value(value) -> str:
    return json.dumps(value) if isinstance(value, str) and (" " in value or not value) else str(value)


def settings_label(values: dict) -> str:
    """``m=4, mode=real``: settings as a row label (preview keys without their section)."""
    return ", ".join(f"{short_key(k)}={show_value(v)}" for k, v in values.items())


def group_runs(runs: Sequence[Run], keys: Sequence[str] | None = None) -> list[Group]:
    """Group runs by ``keys`` (default :func:`varying_keys`) and whether they trained."""
    keys = list(keys) if keys is not None else varying_keys(runs)
    known = sorted({k for r in runs for k in r.config})
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            raise UserError(
                f"--group-by: no run has the config key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "; give dotted keys such as preview.m")
            )
    groups: dict[str, Group] = {}
    for r in runs:
        values = {k: r.config.get(k) for k in keys if k in r.config}
        if not r.trained:  # training settings do not apply to an evaluation-only run
            values = {k: v for k, v in values.items() if not k.startswith(TRAINING_SECTIONS)}
        text = settings_label(values)
        label = (f"not fine-tuned: {text}" if text else "seed (not fine-tuned)") if not r.trained else (text or "all runs")
        key = json.dumps([r.trained, values], sort_keys=True, default=str)
        groups.setdefault(key, Group(label, values, r.trained, [])).runs.append(r)
    return sorted(groups.values(), key=lambda g: (g.trained, [_order(v) for v in g.values.values()], g.label))


def _order(value) -> tuple:
    """Sort key: numbers by value (m=2 before m=12), anything else by its text."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return (0, value, "") if number else (1, 0, json.dumps(value, sort_keys=True, default=str))


# ---------------------------------------------------------------- the paper's methods


def _plain(r: Run) -> bool:
    """Trained with cross-entropy on the task data alone (no mixing, no SDFT rewrites), the loss on
    every answer token and the strategy on every example (none of the map's variants: masked
    previews, skipped answer tokens, preview dropout), and no post-hoc defense. Poisoned runs
    (``data.harmful_mix``) still count: the poison is the attacker's, not the method's."""
    return (
        r.config.get("train.loss", "ce") == "ce"
        and not r.config.get("data.safety_mix")
        and not r.config.get("data.sdft")
        and not r.config.get("preview.mask_preview")
        and not r.config.get("preview.mask_answer_tokens")
        and not r.config.get("preview.dropout")
        and r.config.get("defense.name", "none") == "none"
    )


PAPER_METHODS: list[tuple[str | None, Callable[[Run], bool]]] = [
    ("Seed", lambda r: not r.trained),
    (
        "SDFT",
        lambda r: (
            bool(r.config.get("data.sdft"))
            and r.config.get("preview.mode") == "vanilla"
            and r.config.get("train.loss", "ce") == "ce"
            and not r.config.get("data.safety_mix")
        ),
    ),
    ("Constrained SFT", lambda r: r.config.get("train.loss") == "constrained" and r.config.get("preview.mode") == "vanilla"),
    ("LookAhead (real)", lambda r: _plain(r) and r.config.get("preview.mode") in ("real", "real_range")),
    ("LookAhead (virtual)", lambda r: _plain(r) and r.config.get("preview.mode") in ("virtual", "virtual_pool")),
    ("Vanilla FT", lambda r: _plain(r) and r.config.get("preview.mode") == "vanilla"),
]
"""Table 1 row name -> test on a run (first match wins; combinations the paper did not run,
such as LookAhead with the constrained loss or safety-data mixing, match none)."""


def paper_method(run: Run) -> str | None:
    """The Table 1 row a run belongs to, if any."""
    return next((name for name, test in PAPER_METHODS if test(run)), None)


def utility_key(groups: Sequence[Group]) -> str | None:
    """The utility metric the runs report (GSM8K accuracy, else ROUGE-1)."""
    for key in ("utility/gsm8k_acc", "utility/rouge1", "utility/gsm8k_last_number_acc"):
        if any(g.stat(key)[2] for g in groups):
            return key
    return None


# ---------------------------------------------------------------- judges

AUDIT_RESULTS = Path(__file__).resolve().parents[1] / "assets" / "judge_audit_results.json"
"""Each judge's agreement with the hand scores of the audit set's held-out split
(``experiments/judge_audit/measure.py --write``)."""
AUDITED = (("rsr", "RSR"), ("jsr", "JSR (all k)"))


def judges_used(runs: Sequence[Run]) -> tuple[list[str], list[str]]:
    """(primary judges, other judges) whose rates the runs carry: ``eval.judge.name``; extra
    judges and re-judged labels (``safety/<judge>/...``)."""
    primary = sorted({str(r.config.get("eval.judge.name") or "keyword") for r in runs})
    others = sorted({judge for r in runs for k in r.metrics if (judge := judge_of(k)) is not None})
    return primary, [j for j in others if j not in primary or len(primary) > 1]


def _audit() -> dict:
    """judge -> threshold -> metric -> agreement (empty when the file is missing or damaged)."""
    try:
        found = json.loads(AUDIT_RESULTS.read_text(encoding="utf-8")).get("judges", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return found if isinstance(found, dict) else {}


def judge_pairs(runs: Sequence[Run], primary: str, other: str) -> dict[str, dict]:
    """metric -> agreement of ``other``'s labels with ``primary``'s on the same generations
    (pooled over runs; ``primary`` taken as the reference)."""
    out = {}
    for metric in ("rsr", "jsr@3", "jsr@5", "jsr@10"):
        a, b = [], []
        for r in runs:
            mine, theirs = r.outcomes.get(f"safety/{metric}", {}), r.outcomes.get(f"safety/{other}/{metric}", {})
            for item in sorted(set(mine) & set(theirs)):
                a.append("safe" if mine[item] else "unsafe")
                b.append("safe" if theirs[item] else "unsafe")
        if a:
            out[metric] = agreement(b, a)
    return out


def judges_markdown(runs: Sequence[Run]) -> list[str]:
    """Which judge produced which rates, each judge's audited accuracy, and how far the judges
    agree on these runs' generations."""
    primary, others = judges_used(runs)
    lines = [
        "## Judges",
        "",
        f"Rates without a judge's name (`safety/rsr`, `safety/jsr@k`, `overrefusal/rate`) are the "
        f"{' / '.join(f'`{j}`' for j in primary)} judge's; `safety/<judge>/...` are another judge's on the same generations "
        f"({', '.join(f'`{j}`' for j in others) or 'none'}). Unsafe = the rubric's score 5 (the paper's threshold) for "
        "judges fitted or audited on hand scores.",
    ]
    audit = _audit()
    rows = []
    for judge in [*primary, *others]:
        found = audit.get(judge, {}).get("paper", {})
        cells = [found.get(m) or {} for m, _ in AUDITED]
        if any(cells):
            rows.append(
                f"| {judge} | "
                + " | ".join(f"{_share(c.get('accuracy'))} | {_share(c.get('false_safe'))} | {c.get('n', '–')}" for c in cells)
                + f" | {_share((audit.get(judge, {}).get('overrefusal') or {}).get('accuracy'))} |"
            )
    if rows:
        head = " | ".join(f"{name} accuracy | {name} false-safe | {name} n" for _, name in AUDITED)
        lines += [
            "",
            "Audited on the held-out hand-scored generations of `lat/assets/judge_audit.jsonl` (paper's threshold; "
            "false-safe = share of unsafe responses judged safe):",
            "",
            f"| judge | {head} | over-refusal accuracy |",
            "|" + "---|" * (2 + 3 * len(AUDITED)),
            *rows,
        ]
    pairs = [(p, o, judge_pairs(runs, p, o)) for p in primary[:1] for o in others]
    pairs = [x for x in pairs if x[2]]
    if pairs:
        lines += [
            "",
            f"Agreement with `{primary[0]}` on these runs' generations:",
            "",
            "| judge | metric | n | same label | kappa |",
            "|---|---|---|---|---|",
        ]
        lines += [f"| {o} | {m} | {a['n']} | {_share(a['accuracy'])} | {_share(a['kappa'])} |" for _, o, by in pairs for m, a in by.items()]
    return lines + [""]


def _share(value) -> str:
    return "–" if value is None else f"{value:.3f}"


# ---------------------------------------------------------------- tables


def _pct(mean: float | None, std: float | None, kl: bool = False) -> str:
    if mean is None:
        return "–"
    scale, fmt = (1, "{:.4f}") if kl else (100, "{:.1f}")
    text = fmt.format(scale * mean)
    return text + (" ± " + fmt.format(scale * std) if std is not None else "")


METHOD_KEYS = ("method", "preview.", "defense.", "data.sdft", "data.safety_mix", "train.loss", "train.constrained")
"""Config keys (prefixes) that make a method rather than its setting: a method is compared with
the Vanilla FT run of the same setting. ``method`` is the ``method=NAME`` file a run was started
with, recorded beside the settings it sets."""


def cell(group: Group) -> dict:
    """The group's settings outside the method (learning rate, epochs, LoRA or full, poison share, ...)."""
    return {k: v for k, v in group.values.items() if not k.startswith(METHOD_KEYS)}


def baseline_group(groups: Sequence[Group], of: Group | None = None) -> Group | None:
    """The Vanilla FT group differences are measured against: the one trained with the same
    settings outside the preview as ``of`` (same learning rate, epochs, ...), else the first."""
    vanilla = [g for g in groups if g.trained and paper_method(g.runs[0]) == "Vanilla FT"]
    same = [g for g in vanilla if of is not None and cell(g) == cell(of)]
    found = same or vanilla
    return found[0] if found else None


def difference(group: Group, base: Group, key: str) -> Difference | None:
    """``group - base`` on the prompts both evaluated, with its paired-bootstrap interval."""
    a, b = base.outcomes(key), group.outcomes(key)
    items = sorted(set(a) & set(b))
    return paired_bootstrap([a[i] for i in items], [b[i] for i in items]) if items else None


def group_rows(groups: Sequence[Group], metrics: Sequence[str]) -> list[dict]:
    """One dict per group: label, n, ``<metric>`` / ``<metric>/std`` (raw fractions), and for
    rates ``<metric>/ci_low`` / ``ci_high`` (Wilson) and ``<metric>/delta`` / ``delta_low`` /
    ``delta_high`` / ``significant`` against the Vanilla FT setting (paired bootstrap)."""
    rows = []
    for g in groups:
        base = baseline_group(groups, g)
        row = {"setting": g.label, "runs": len(g.runs), "paper_method": paper_method(g.runs[0])}
        if base is not None and g is not base:
            row["baseline"] = base.label
        for m in metrics:
            mean, std, _ = g.stat(m)
            row[m], row[f"{m}/std"] = mean, std
            ci = g.interval(m)
            if ci:
                row[f"{m}/ci_low"], row[f"{m}/ci_high"] = ci
            d = difference(g, base, m) if base is not None and g is not base else None
            if d:
                row.update({f"{m}/delta": d.delta, f"{m}/delta_low": d.low, f"{m}/delta_high": d.high, f"{m}/significant": d.significant})
        rows.append(row)
    return rows


def _ci(ci: tuple[float, float] | None) -> str:
    return "–" if ci is None else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _delta(d: Difference | None) -> str:
    if d is None:
        return "–"
    return f"{100 * d.delta:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}]" + (" *" if d.significant else "")


def intervals_markdown(groups: Sequence[Group], rates: Sequence[str]) -> list[str]:
    """Wilson intervals per setting, and differences from Vanilla FT with significance marks."""
    if not rates:
        return []
    head = ["setting", *rates]
    lines = [
        "",
        "## Rates with 95 % intervals",
        "",
        "Wilson score interval, outcomes pooled over the setting's runs (%).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    lines += ["| " + " | ".join([g.label] + [_ci(g.interval(m)) for m in rates]) + " |" for g in groups]
    pairs = [(g, base) for g in groups if (base := baseline_group(groups, g)) is not None and g is not base]
    if not pairs:
        return lines
    head = ["setting", "against", *rates]
    lines += [
        "",
        "## Differences from Vanilla FT",
        "",
        "Percentage points against the Vanilla FT setting with the same settings outside the preview "
        "(else the first one); paired bootstrap over the prompts both settings evaluated (10,000 "
        "resamples; a prompt's outcome is its mean over seeds); * = the 95 % interval excludes 0.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    lines += ["| " + " | ".join([g.label, base.label] + [_delta(difference(g, base, m)) for m in rates]) + " |" for g, base in pairs]
    return lines


def markdown(groups: Sequence[Group], metrics: Sequence[str], util: str | None) -> str:
    """The groups table and the Table 1 layout as markdown."""
    judge = " / ".join(judges_used([r for g in groups for r in g.runs])[0])
    head = ["setting", "runs", *metrics]
    lines = ["## Settings (mean ± std over seeds)", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in groups:
        cells = [g.label, str(len(g.runs))] + [_pct(*g.stat(m)[:2], kl=m.startswith("kl/")) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Paper Table 1 layout",
        "",
        f"Ours: RSR and JSR@3 ({judge} judge), over-refusal and utility ({util or 'none'}), mean ± std over seeds. "
        "Paper: Llama-2-7B-Chat, full fine-tuning, GPT-4 judge, averages over GSM8K and SAMSum "
        "(arXiv 2503.19041, Table 1) - for reference, not a like-for-like comparison.",
        "",
        "| method | setting | RSR | JSR | over-refusal | utility | paper RSR | paper JSR | paper utility |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in PAPER_TABLE1:
        matching = [g for g in groups if paper_method(g.runs[0]) == name]
        paper = " | ".join(f"{x:.2f}" for x in PAPER_TABLE1[name])
        if not matching:
            lines.append(f"| {name} | (not run) | – | – | – | – | {paper} |")
        for g in matching:
            ours = [_pct(*g.stat(k)[:2]) for k in ("safety/rsr", "safety/jsr@3", "overrefusal/rate")] + [_pct(*g.stat(util)[:2]) if util else "–"]
            lines.append(f"| {name} | {g.label} | {' | '.join(ours)} | {paper} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- plots


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both coordinates (higher is better on both)."""
    return [i for i, (x, y) in enumerate(points) if not any((a >= x and b >= y) and (a > x or b > y) for j, (a, b) in enumerate(points) if j != i)]


def plot_pareto(groups: Sequence[Group], util: str, path: Path) -> Path | None:
    """Safety (RSR) against utility, one point per setting with std error bars; front joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(g, g.stat(util), g.stat("safety/rsr")) for g in groups]
    pts = [(g, u, s) for g, u, s in pts if u[0] is not None and s[0] is not None]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(6, 4.5))
    xy = [(100 * float(u[0] or 0), 100 * float(s[0] or 0)) for _, u, s in pts]  # None filtered out above
    for (g, u, s), (x, y) in zip(pts, xy):
        ax.errorbar(x, y, xerr=100 * (u[1] or 0), yerr=100 * (s[1] or 0), fmt="o", ms=5, capsize=2)
        ax.annotate(g.label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    front = sorted(xy[i] for i in pareto_front(xy))
    ax.plot([p[0] for p in front], [p[1] for p in front], "k--", lw=1, label="Pareto front")
    ax.set_xlabel(f"{util} (%)")
    ax.set_ylabel("RSR (%)")
    ax.set_title("Safety vs utility (mean ± std over seeds)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    out = save_png(fig, path)
    plt.close(fig)
    return out


def plot_kl_family(groups: Sequence[Group], mode: str, key: str, path: Path) -> Path | None:
    """Mean per-position KL of every group with ``preview.mode == mode``, one line per value of
    ``key`` (``preview.m`` or ``preview.prefix``), vanilla groups dashed for reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    family = [g for g in groups if g.trained and g.runs[0].config.get("preview.mode") == mode]
    base = [g for g in groups if g.trained and g.runs[0].config.get("preview.mode") == "vanilla"]
    if not family:
        return None
    probe = next((p for g in family for r in g.runs for p in r.kl), None)
    if probe is None:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for g in sorted(family, key=lambda g: _order(g.runs[0].config.get(key))):
        curve = g.mean_curve(probe)
        ax.plot(list(curve), list(curve.values()), marker="o", ms=3, label=g.label)
    for g in base:
        curve = g.mean_curve(probe)
        ax.plot(list(curve), list(curve.values()), "k--", lw=1.2, label=g.label)
    ax.set_xlabel("answer position")
    ax.set_ylabel("KL(seed || tuned)")
    ax.set_title(f"Per-position KL on '{probe}' probes across {short_key(key)}")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    out = save_png(fig, path)
    plt.close(fig)
    return out


def write_report(paths: Sequence[Path], out: Path | None = None, keys: Sequence[str] | None = None) -> Path:
    """Aggregate the runs under ``paths`` into ``out`` (default ``reports/<first path's name>``)."""
    runs = find_runs(paths)
    groups = group_runs(runs, keys)
    out = Path(out) if out is not None else Path("reports") / Path(paths[0]).resolve().name
    util = utility_key(groups)
    rejudged = sorted(
        {k for r in runs for k in r.metrics if k.count("/") == 2 and k not in HEADLINE and judge_of(k) and k.split("/")[2] in ("rsr", "jsr@3", "rate")}
    )
    present = [m for m in (*HEADLINE, *rejudged, *(f"kl/pos_{p:02d}" for p in KL_POSITIONS)) if any(g.stat(m)[2] for g in groups)]
    rows = group_rows(groups, present)
    rates = [m for m in present if any(r.outcomes.get(m) for r in runs)]
    text = "\n".join(judges_markdown(runs)) + "\n" + markdown(groups, present, util) + "\n".join(intervals_markdown(groups, rates)) + "\n"
    write_text(out / "report.md", f"# Report: {len(runs)} runs in {len(groups)} settings\n\n" + text)
    write_json(out / "report.json", rows)
    write_csv(out / "report.csv", rows)
    if util:
        plot_pareto(groups, util, out / "pareto.png")
    plot_kl_family(groups, "real", "preview.m", out / "kl_by_m.png")
    plot_kl_family(groups, "virtual", "preview.prefix", out / "kl_by_prefix.png")
    return out
