"""Bad input of every kind ends in one line naming the problem, exit code 2, and no output.

Each case is a distinct mistake in a data file, a config file or override, a sweep file, a CLI
argument, a model folder or a run folder. Every one must give exit code 2, one ``lat: ...``
line that matches the expected text, no traceback, and leave nothing new behind (no run folder,
no output file).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lat.cli import main

SMOKE = ["experiment=smoke"]


def _jsonl(rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


GOOD_ROW = {"question": "What is 2 + 3?", "answer": "2 + 3 = 5\n#### 5"}

# name -> (files to create {name: text}, argv (``{tmp}`` = the test folder), expected message regex)
CASES = {
    # ---- data files
    "data: missing file": ({}, ["train", *SMOKE, "data.train_path={tmp}/none.jsonl"], r"none\.jsonl.*(not found|no such|does not exist)"),
    "data: invalid JSON line": (
        {"d.jsonl": _jsonl([GOOD_ROW, '{"question": "q", '])},
        ["train", *SMOKE, "data.train_path={tmp}/d.jsonl"],
        r"d\.jsonl: line 2: invalid JSON",
    ),
    "data: missing field": (
        {"d.jsonl": _jsonl([{"question": "q"}])},
        ["train", *SMOKE, "data.train_path={tmp}/d.jsonl"],
        r"d\.jsonl: line 1: field 'answer': missing",
    ),
    "data: field of wrong type": (
        {"d.jsonl": _jsonl([{"question": "q", "answer": 4}])},
        ["train", *SMOKE, "data.train_path={tmp}/d.jsonl"],
        r"line 1: field 'answer': expected a string, got int",
    ),
    "data: empty answer": (
        {"d.jsonl": _jsonl([{"question": "q", "answer": " "}])},
        ["train", *SMOKE, "data.train_path={tmp}/d.jsonl"],
        r"line 1: field 'answer': empty",
    ),
    "data: empty file": ({"d.jsonl": ""}, ["train", *SMOKE, "data.train_path={tmp}/d.jsonl"], r"d\.jsonl: .*(no records|empty)"),
    "data: record not an object": ({"d.jsonl": "[1, 2]\n"}, ["train", *SMOKE, "data.train_path={tmp}/d.jsonl"], r"d\.jsonl: line 1: .*object"),
    "data: unknown extension": ({"d.txt": "hello\n"}, ["train", *SMOKE, "data.train_path={tmp}/d.txt"], r"d\.txt: .*format"),
    "data: csv without the column": ({"d.csv": "question,solution\nq,a\n"}, ["train", *SMOKE, "data.train_path={tmp}/d.csv"], r"d\.csv: .*field 'answer'"),
    "data: json file that is not a list": ({"d.json": json.dumps({"question": "q"})}, ["train", *SMOKE, "data.train_path={tmp}/d.json"], r"d\.json: .*list"),
    "data: nothing fits max_length": (
        {"d.jsonl": _jsonl([GOOD_ROW])},
        ["train", *SMOKE, "data.train_path={tmp}/d.jsonl", "data.max_length=8"],
        r"no example fits data\.max_length=8",
    ),
    "data: holdout larger than the data": (
        {"d.jsonl": _jsonl([GOOD_ROW] * 3)},
        ["train", *SMOKE, "data.train_path={tmp}/d.jsonl", "data.val_size=5"],
        r"data\.val_size: 5 leaves no training records",
    ),
    # ---- config overrides
    "override: unknown key": ({}, ["train", *SMOKE, "train.nope=1"], r"unknown key 'train\.nope'"),
    "override: wrong type": ({}, ["train", *SMOKE, "train.lr=fast"], r"train\.lr"),
    "override: unknown experiment": ({}, ["train", "experiment=nope"], r"experiment.*'nope'|nope\.yaml"),
    "override: unknown method": ({}, ["train", *SMOKE, "method=nope"], r"method.*nope"),
    "override: unknown model preset": ({}, ["train", *SMOKE, "model=nope"], r"model.*nope"),
    "override: preview m = 0": ({}, ["train", *SMOKE, "preview.m=0"], r"preview\.m: must be >= 1, got 0"),
    "override: unknown preview mode": ({}, ["train", *SMOKE, "preview.mode=sideways"], r"unknown strategy 'sideways'"),
    "override: unknown loss": ({}, ["train", *SMOKE, "train.loss=nope"], r"train\.loss: unknown loss 'nope'"),
    "override: unknown schedule": ({}, ["train", *SMOKE, "train.schedule=nope"], r"train\.schedule: unknown schedule 'nope'"),
    "override: unknown precision": ({}, ["train", *SMOKE, "train.precision=bf17"], r"train\.precision: unknown 'bf17'"),
    "override: unknown seed SFT dtype": ({}, ["align", *SMOKE, "align.dtype=half"], r"align\.dtype: unknown 'half'"),
    "override: unknown starting point": ({}, ["train", *SMOKE, "train.start_from=nope"], r"train\.start_from: unknown starting point 'nope'"),
    "override: safety mix out of range": ({}, ["train", *SMOKE, "data.safety_mix=1.5"], r"data\.safety_mix: must be in \[0, 1\)"),
    "override: zero batch size": ({}, ["train", *SMOKE, "data.batch_size=0"], r"data\.batch_size: must be >= 1, got 0"),
    "override: zero epochs": ({}, ["train", *SMOKE, "train.epochs=0", "train.max_steps=-1"], r"train\.epochs: must be >= 1, got 0"),
    "override: negative learning rate": ({}, ["train", *SMOKE, "train.lr=-1e-4"], r"train\.lr: must be > 0"),
    # ---- config files
    "config file: missing": ({}, ["train", "config={tmp}/none.yaml"], r"none\.yaml"),
    "config file: invalid YAML": ({"c.yaml": "train: [lr: 1\n"}, ["train", "config={tmp}/c.yaml"], r"c\.yaml"),
    "config file: unsafe YAML tag": ({"c.yaml": "train:\n  lr: !!python/object/apply:os.getcwd []\n"}, ["config", "config={tmp}/c.yaml"], r"c\.yaml"),
    "config file: not a mapping": ({"c.yaml": "- 1\n- 2\n"}, ["config", "config={tmp}/c.yaml"], r"c\.yaml"),
    # ---- sweep files
    "sweep: invalid YAML": ({"s.yaml": "parameters: [\n"}, ["sweep", "{tmp}/s.yaml", "--root", "{tmp}/sw"], r"s\.yaml"),
    "sweep: no parameters": ({"s.yaml": "method: grid\n"}, ["sweep", "{tmp}/s.yaml", "--root", "{tmp}/sw"], r"s\.yaml.*parameters"),
    "sweep: unknown method": (
        {"s.yaml": "method: telepathy\nparameters:\n  train.lr: {values: [1]}\n"},
        ["sweep", "{tmp}/s.yaml", "--root", "{tmp}/sw"],
        r"s\.yaml.*telepathy",
    ),
    "sweep: unknown parameter": (
        {"s.yaml": "method: grid\nparameters:\n  train.nope: {values: [1]}\n"},
        ["sweep", "{tmp}/s.yaml", "--root", "{tmp}/sw"],
        r"train\.nope",
    ),
    "sweep: parameter without values": (
        {"s.yaml": "method: grid\nparameters:\n  train.lr: {}\n"},
        ["sweep", "{tmp}/s.yaml", "--root", "{tmp}/sw"],
        r"train\.lr",
    ),
    # ---- CLI arguments
    "cli: unknown command": ({}, ["frobnicate"], r"invalid choice: 'frobnicate'"),
    "cli: argument without a value": ({}, ["train", *SMOKE, "--train.lr"], r"unrecognized arguments: --train\.lr"),
    "cli: preview without input": ({}, ["preview", "--mode", "virtual"], r"required"),
    "cli: report of a missing folder": ({}, ["report", "{tmp}/nothing"], r"nothing"),
    # ---- models and run folders
    "model: no such folder": ({}, ["train", *SMOKE, "model.name_or_path={tmp}/no_model"], r"no_model"),
    "model: truncated weights": (
        {"m/config.json": "{}", "m/model.safetensors": "trunc"},
        ["train", *SMOKE, "model.name_or_path={tmp}/m"],
        r"m\b.*(load|config|weights|safetensors)",
    ),
    "run folder: resume without a folder": ({}, ["train", *SMOKE, "run.resume=true"], r"no run folder to resume"),
    "eval: missing adapter": ({}, ["eval", *SMOKE, "model.adapter_path={tmp}/no_adapter"], r"no_adapter"),
}


def _make(tmp: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _tree(tmp: Path) -> set[str]:
    return {str(p.relative_to(tmp)) for p in tmp.rglob("*")}


def test_the_suite_is_at_least_thirty_distinct_inputs():
    assert len(CASES) >= 30 and len({(tuple(sorted(f.items())), tuple(a)) for f, a, _ in CASES.values()}) == len(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_exits_2_with_one_line_and_no_output(name, tmp_path, monkeypatch, capsys):
    files, argv, pattern = CASES[name]
    _make(tmp_path, files)
    monkeypatch.chdir(tmp_path)  # anything written to the default run root would land here
    before = _tree(tmp_path)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if argv[0] in ("train", "eval", "run"):
        argv.append(f"run.root={tmp_path}/runs")
    try:
        code = main(argv)
    except SystemExit as e:  # argparse usage errors
        code = e.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err
    assert len([line for line in lines if line.startswith("lat")]) == 1, err
    assert re.search(pattern, err), err
    assert _tree(tmp_path) == before, f"left behind: {_tree(tmp_path) - before}"
