"""Synthetic GSM8K-style arithmetic word problems, generated from a seed.

The embedded 135M model cannot learn real GSM8K in a few hundred CPU LoRA steps, so the laptop
study fine-tunes on this task instead. Records use GSM8K's exact answer format, so the same task
adapter, preview strategies and ``####`` exact-match metric apply unchanged::

    {"question": "...", "answer": "Mia has 12 - 5 = <<12-5=7>>7 pencils.\\n...\\n#### 15"}

One worked step per line, each with a ``<<expr=value>>`` calculator annotation; every operand and
intermediate value is a non-negative integer (divisions are exact by construction).
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Callable, Iterable

from lat.core.errors import UserError
from lat.core.registry import unknown_name
from lat.data.records import write_records

# Operand ranges scale with difficulty; "easy" keeps numbers small enough that a tiny model can
# learn the task visibly in a few hundred steps.
SCALES = {"easy": 1, "medium": 4}

NAMES = [
    ("Mia", "she"),
    ("Leo", "he"),
    ("Ava", "she"),
    ("Sam", "he"),
    ("Nora", "she"),
    ("Omar", "he"),
    ("Lily", "she"),
    ("Ben", "he"),
    ("Zoe", "she"),
    ("Raj", "he"),
    ("Ella", "she"),
    ("Tom", "he"),
    ("Ivy", "she"),
    ("Max", "he"),
    ("Lucia", "she"),
    ("Kenji", "he"),
]
ITEMS = ["apples", "pencils", "stickers", "marbles", "cookies", "books", "cards", "shells", "stamps", "eggs"]
GOODS = [
    ("notebook", "notebooks"),
    ("pen", "pens"),
    ("toy car", "toy cars"),
    ("cupcake", "cupcakes"),
    ("comic", "comics"),
    ("ball", "balls"),
    ("mug", "mugs"),
    ("plant", "plants"),
]
RATES = [
    ("reads", "read", "pages"),
    ("types", "type", "lines"),
    ("paints", "paint", "tiles"),
    ("folds", "fold", "paper cranes"),
    ("bakes", "bake", "muffins"),
    ("picks", "pick", "strawberries"),
]
# (larger unit, smaller unit, factor, question); every factor is an integer so answers stay whole.
UNITS = [
    ("hours", "minutes", 60, "{name} practices the piano for {n} hours. How many minutes is that?"),
    ("weeks", "days", 7, "{name} goes to summer camp for {n} weeks. How many days is that?"),
    ("dozen", "eggs", 12, "{name} buys {n} dozen eggs. How many eggs is that?"),
    ("meters", "centimeters", 100, "{name} has a rope that is {n} meters long. How many centimeters long is the rope?"),
    ("feet", "inches", 12, "{name} has a board that is {n} feet long. How many inches long is the board?"),
]
CONTAINERS = ["boxes", "bags", "baskets", "jars", "crates"]
PRODUCTS = ["jacket", "bike", "lamp", "backpack", "game", "chair"]


def _step(before: str, expr: str, value: int, after: str = "", money: bool = False) -> str:
    """One worked line, e.g. ``The pens cost 3 * 4 = $<<3*4=12>>12.`` (``$`` before money, as in GSM8K)."""
    shown = re.sub(r"([-+*/])", r" \1 ", expr)
    return f"{before}{shown} = {'$' if money else ''}<<{expr}={value}>>{value}{after}"


# Each template maps (rng, scale) -> (question, worked lines, final answer).


def _change(rng, s):
    name, he = rng.choice(NAMES)
    _, goods = rng.choice(GOODS)
    n, p = rng.randint(2, 4 * s), rng.randint(1, 5 * s)
    cost = n * p
    bill = next(b for b in (5, 10, 20, 50, 100, 200, 500) if b > cost)
    q = f"{name} buys {n} {goods} for ${p} each and pays with a ${bill} bill. How much change does {he} get?"
    return (
        q,
        [_step(f"The {goods} cost ", f"{n}*{p}", cost, ".", money=True), _step(f"{name} gets ", f"{bill}-{cost}", bill - cost, " in change.", money=True)],
        bill - cost,
    )


def _rate(rng, s):
    name, _ = rng.choice(NAMES)
    verbs, verb, things = rng.choice(RATES)
    r, t = rng.randint(2, 9 * s), rng.randint(2, 6)
    q = f"{name} {verbs} {r} {things} every hour. How many {things} does {name} {verb} in {t} hours?"
    return q, [_step(f"In {t} hours {name} {verbs} ", f"{r}*{t}", r * t, f" {things}.")], r * t


def _share(rng, s):
    name, _ = rng.choice(NAMES)
    things = rng.choice(ITEMS)
    k, each = rng.randint(2, 6), rng.randint(2, 8 * s)
    total = k * each  # built from the quotient so the division is exact
    q = f"{name} has {total} {things} and shares them equally among {k} friends. How many {things} does each friend get?"
    return q, [_step("Each friend gets ", f"{total}/{k}", each, f" {things}.")], each


def _add_sub(rng, s):
    name, he = rng.choice(NAMES)
    things = rng.choice(ITEMS)
    a = rng.randint(6, 20 * s)
    b, c = rng.randint(1, a - 1), rng.randint(1, 10 * s)
    q = f"{name} has {a} {things}. {he.capitalize()} gives {b} to a friend and then finds {c} more. How many {things} does {name} have now?"
    return (
        q,
        [
            _step(f"After giving some away, {name} has ", f"{a}-{b}", a - b, f" {things}."),
            _step(f"After finding more, {he} has ", f"{a - b}+{c}", a - b + c, f" {things}."),
        ],
        a - b + c,
    )


def _discount(rng, s):
    product = rng.choice(PRODUCTS)
    pct = rng.choice([10, 20, 25, 50])
    price = 20 * rng.randint(1, 5 * s)  # multiples of 20 give a whole-dollar discount for every pct
    off = price * pct // 100
    q = f"A {product} costs ${price}. It is on sale for {pct}% off. How much does the {product} cost on sale?"
    return (
        q,
        [_step("The discount is ", f"{price}*{pct}/100", off, ".", money=True), _step("The sale price is ", f"{price}-{off}", price - off, ".", money=True)],
        price - off,
    )


def _ages(rng, s):
    (a_name, _), (b_name, _) = rng.sample(NAMES, 2)
    age, gap, years = rng.randint(3, 12 * s), rng.randint(2, 9), rng.randint(2, 10)
    now = age + gap
    q = f"{a_name} is {age} years old. {b_name} is {gap} years older than {a_name}. How old will {b_name} be in {years} years?"
    return (
        q,
        [
            _step(f"{b_name} is ", f"{age}+{gap}", now, " years old now."),
            _step(f"In {years} years {b_name} will be ", f"{now}+{years}", now + years, " years old."),
        ],
        now + years,
    )


def _convert(rng, s):
    name, _ = rng.choice(NAMES)
    _, small, factor, question = rng.choice(UNITS)
    n = rng.randint(2, 9 * s)
    return question.format(name=name, n=n), [_step("That is ", f"{n}*{factor}", n * factor, f" {small}.")], n * factor


def _groups(rng, s):
    name, _ = rng.choice(NAMES)
    things, box = rng.choice(ITEMS), rng.choice(CONTAINERS)
    g, n, m = rng.randint(2, 6), rng.randint(2, 9 * s), rng.randint(1, 10 * s)
    q = f"There are {g} {box} with {n} {things} in each. {name} adds {m} more {things}. How many {things} are there in total?"
    return q, [_step(f"The {box} hold ", f"{g}*{n}", g * n, f" {things}."), _step("In total there are ", f"{g * n}+{m}", g * n + m, f" {things}.")], g * n + m


def _saving(rng, s):
    name, he = rng.choice(NAMES)
    per, weeks = rng.randint(2, 10 * s), rng.randint(2, 9)
    goal = per * weeks
    q = f"{name} saves ${per} every week. How many weeks does {he} need to save ${goal}?"
    return q, [_step(f"{name} needs ", f"{goal}/{per}", weeks, " weeks.")], weeks


def _two_items(rng, s):
    name, he = rng.choice(NAMES)
    (_, g1), (_, g2) = rng.sample(GOODS, 2)
    a, p, b, r = rng.randint(2, 5), rng.randint(1, 6 * s), rng.randint(2, 5), rng.randint(1, 6 * s)
    q = f"{name} buys {a} {g1} for ${p} each and {b} {g2} for ${r} each. How much does {he} spend in total?"
    return (
        q,
        [
            _step(f"The {g1} cost ", f"{a}*{p}", a * p, ".", money=True),
            _step(f"The {g2} cost ", f"{b}*{r}", b * r, ".", money=True),
            _step(f"{name} spends ", f"{a * p}+{b * r}", a * p + b * r, " in total.", money=True),
        ],
        a * p + b * r,
    )


Template = Callable[[random.Random, int], tuple[str, list[str], int]]
TEMPLATES: dict[str, Template] = {
    "change": _change,
    "rate_time": _rate,
    "share_equally": _share,
    "add_subtract": _add_sub,
    "percent_discount": _discount,
    "ages": _ages,
    "unit_conversion": _convert,
    "groups": _groups,
    "saving_goal": _saving,
    "two_item_total": _two_items,
}


def generate(n: int, seed: int, difficulty: str = "easy", exclude: Iterable[str] = ()) -> list[dict]:
    """Generate ``n`` distinct arithmetic word problems.

    Args:
        n: Number of records.
        seed: Seed of a private ``random.Random`` (the global RNG is never touched).
        difficulty: ``"easy"`` (small numbers, 1-3 steps, mostly 1-2) or ``"medium"`` (larger numbers).
        exclude: Questions that must not appear (e.g. the train set when generating the test set).

    Returns:
        Records ``{"question", "answer"}``; the answer is GSM8K-formatted and ends with ``#### N``.

    Raises:
        UserError: Unknown difficulty, or more distinct problems asked for than the templates can make.
    """
    if difficulty not in SCALES:
        raise unknown_name("", "arithmetic difficulty", difficulty, sorted(SCALES))
    rng, scale = random.Random(seed), SCALES[difficulty]
    names, seen, misses = sorted(TEMPLATES), set(exclude), 0
    out: list[dict] = []
    while len(out) < n:
        question, lines, result = TEMPLATES[rng.choice(names)](rng, scale)
        if question in seen:  # duplicates would leak between splits and overweight easy cases
            misses += 1
            if misses > 100 * n + 10_000:  # the question space is finite; never loop forever
                raise UserError(f"cannot generate {n} distinct {difficulty} arithmetic problems")
            continue
        seen.add(question)
        out.append({"question": question, "answer": "\n".join(lines + [f"#### {result}"])})
    return out


def write_default_assets(directory: str | Path | None = None) -> tuple[Path, Path]:
    """Write the shipped ``arithmetic_train.jsonl`` (2000, seed 1) and ``arithmetic_test.jsonl`` (200, seed 2).

    Args:
        directory: Target folder; defaults to ``lat/assets``.

    Returns:
        The train and test paths.
    """
    directory = Path(directory) if directory is not None else Path(__file__).resolve().parent.parent / "assets"
    train = generate(2000, seed=1)
    test = generate(200, seed=2, exclude=[r["question"] for r in train])
    paths = directory / "arithmetic_train.jsonl", directory / "arithmetic_test.jsonl"
    write_records(paths[0], train)
    write_records(paths[1], test)
    return paths


if __name__ == "__main__":
    print(*write_default_assets(), sep="\n")
