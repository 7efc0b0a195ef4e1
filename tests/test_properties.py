"""Property-based tests (hypothesis): whatever a user hands lat ends in a result or a one-line
:class:`~lat.core.errors.UserError`, never another exception.

* Record files: any bytes or text saved as a ``.jsonl``, ``.json`` or ``.csv`` training file
  either loads through :func:`lat.data.records.read_records` (and its fields read as text or
  fail with a UserError) or raises a UserError naming the file.
* Dotted overrides: any ``key=value`` strings, keys drawn from the real settings of
  :mod:`lat.config.schema` and from random text, values from random text, numbers, lists and
  YAML-ish snippets, either resolve (:func:`lat.config.load_config`, then
  :func:`lat.workflows.check.check_config`) to a Config or raise a one-line UserError.
"""

from __future__ import annotations

import dataclasses
import tempfile
import typing
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lat.config import SECTIONS, Config, load_config
from lat.core.errors import UserError
from lat.data.records import read_records
from lat.workflows.check import check_config

SETTINGS = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
"""No example database: nothing is written into the checkout."""
FILES = settings(SETTINGS, max_examples=500)


def _one_line(e: UserError) -> str:
    text = str(e)
    assert text.strip() and len(text.splitlines()) == 1, repr(text)
    return text


# ---------------------------------------------------------------- record files

JSONISH = st.sampled_from(['{"question": "q", "answer": "a"}', "[", "]", "{", "}", '"', ",", ":", "null", "1e999", "-", "\\u", "\n", "\r", "\x00", "\ufeff"])
RECORD_TEXT = st.one_of(
    st.text(max_size=300),
    st.lists(JSONISH, max_size=40).map("".join),
    st.lists(st.one_of(JSONISH, st.text(max_size=10), st.sampled_from(["question,answer\n", ",", '"', "\r\n"])), max_size=40).map("".join),
)


def _load(name: str, content: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        path.write_bytes(content)
        try:
            records = read_records(path)
        except UserError as e:
            assert str(path) in _one_line(e)
            return
        assert len(records) >= 1 and all(isinstance(r, dict) for r in records.records)
        for field in ("question", "answer"):
            try:
                records.texts(field)
            except UserError as e:
                assert str(path) in _one_line(e)


EXTENSIONS = st.sampled_from(["d.jsonl", "d.json", "d.csv"])


@FILES
@given(name=EXTENSIONS, content=st.binary(max_size=400))
@example(name="d.json", content=b"[" * 100_000)  # nested deeper than the JSON decoder recurses
@example(name="d.jsonl", content=b"[" * 100_000 + b"\n")
@example(name="d.jsonl", content=b"1" * 5000 + b"\n")  # an integer longer than int() takes
@example(name="d.json", content=b"[" + b"9" * 5000 + b"]")
@example(name="d.csv", content=b"question,answer\n" + b"x" * 200_000 + b",a\n")  # a field over csv's limit
@example(name="d.csv", content=b'question,answer\n"q\x00",a\n')
@example(name="d.jsonl", content=b"\xef\xbb\xbf" + b'{"question": "q", "answer": "a"}\n')  # a UTF-8 byte-order mark
def test_any_bytes_as_a_record_file_load_or_fail_in_one_line(name, content):
    _load(name, content)


@FILES
@given(name=EXTENSIONS, text=RECORD_TEXT)
def test_any_text_as_a_record_file_loads_or_fails_in_one_line(name, text):
    _load(name, text.encode("utf-8", "surrogatepass"))


# ---------------------------------------------------------------- dotted overrides


def _settings(cls: type, prefix: str = "") -> list[str]:
    """Every dotted setting of a schema dataclass (``train.lr``, ``eval.judge.name`` ...)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            out += _settings(typing.cast(type, hint), f"{prefix}{f.name}.")
        else:
            out.append(f"{prefix}{f.name}")
    return out


KEYS = _settings(Config)
SELECTORS = ("config",)
"""Keys that name a file to read (anywhere on disk): kept out of the random keys."""

YAMLISH = st.sampled_from(
    [
        "",
        "null",
        "~",
        "true",
        "no",
        "[]",
        "{}",
        "[1, 2",
        "{a: 1}",
        "[{name: p}]",
        "[{name: p, path: x.jsonl}]",
        "${oops}",
        "${train.lr}",
        "'quoted",
        '"dq',
        "a: b",
        "- x",
        "!!python/object/apply:os.getcwd []",
        "&a [*a]",
        "*b",
        "%YAML 1.2",
        "nan",
        "-.inf",
        "1e309",
        "0x1F",
        "1_000",
        "\t",
        "|",
        ">-",
        "? k",
        "@",
        "`",
    ]
)
NAMES = st.sampled_from(
    [
        "real",
        "virtual",
        "vanilla",
        "real_range",
        "keyword",
        "llm",
        "ce",
        "constrained",
        "cosine",
        "gsm8k",
        "samsum",
        "seed",
        "auto",
        "cpu",
        "bf16-mixed",
        "float16",
        "sdpa",
        "offline",
        "tiny",
        "embedded",
        "harmful",
    ]
)
VALUES = st.one_of(
    YAMLISH,
    NAMES,
    st.text(max_size=30),
    st.integers(min_value=-3, max_value=20).map(str),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(min_value=0, max_value=1).map(repr),
    st.lists(st.one_of(st.integers(-5, 5).map(str), st.floats(-2, 2).map(repr), st.text(max_size=5), NAMES, YAMLISH), max_size=4).map(
        lambda xs: "[" + ", ".join(xs) + "]"
    ),
)
RANDOM_KEYS = st.one_of(
    st.text(max_size=20),
    st.lists(st.sampled_from(["train", "data", "lr", "probes", "[0]", ".", "..", "eval", "judge", "name", "-", "$", "{"]), max_size=5).map("".join),
).filter(lambda k: k.strip().lstrip("-") not in SELECTORS)
KEY = st.one_of(st.sampled_from(KEYS), st.sampled_from(KEYS), st.sampled_from(KEYS), st.sampled_from(["experiment", "method", *SECTIONS]), RANDOM_KEYS)
OVERRIDE = st.builds(lambda key, value, dashes: f"{'--' if dashes else ''}{key}={value}", KEY, VALUES, st.booleans())
ARGS = st.one_of(OVERRIDE, OVERRIDE, OVERRIDE, st.text(max_size=20).filter(lambda a: a.strip().lstrip("-").partition("=")[0].strip() not in SELECTORS))


@SETTINGS
@given(base=st.sampled_from([[], ["experiment=smoke"]]), args=st.lists(ARGS, min_size=1, max_size=3))
@example(base=["experiment=smoke"], args=["train.betas=[0.5,"])  # a value that is not YAML
@example(base=[], args=["data.probes[0].task=x"])  # a list item by index
@example(base=[], args=["eval.jsr_k=3"])  # a scalar for a list
@example(base=[], args=["data.probes={name: x}"])  # a mapping for a list
@example(base=[], args=["train={}"])  # a section given a mapping as a file name
@example(base=[], args=["run.name=${train.lr}"])
@example(base=[], args=["experiment=\n"])  # a line break in a name the message repeats
@example(base=["experiment=smoke"], args=["model=a\u2028b"])
def test_any_overrides_resolve_or_fail_in_one_line(base, args):
    try:
        cfg = check_config(load_config(base + args))
    except UserError as e:
        _one_line(e)
        return
    assert isinstance(cfg, Config)


@SETTINGS
@given(base=st.sampled_from([[], ["experiment=smoke"], ["experiment=quickstart", "method=real"]]), key=st.sampled_from(KEYS), value=VALUES)
def test_any_value_of_a_real_setting_resolves_or_fails_in_one_line(base, key, value):
    try:
        cfg = check_config(load_config([*base, f"{key}={value}"]))
    except UserError as e:
        _one_line(e)
        return
    assert isinstance(cfg, Config)
