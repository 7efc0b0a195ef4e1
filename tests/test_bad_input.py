"""Bad input of every kind ends in one line naming the problem, exit code 2, and no output.

Each case is a distinct mistake in a data file, a config file or override, a sweep file, a CLI
argument, a model folder or a run folder, filed under the command it is given to (``PREVIEW``,
``CONFIG``, ``TRAIN``, ``EVAL``, ``ALIGN``, ``RUN``, ``SWEEP``, ``REPORT``; ``LAT`` for the
top-level parser). Every one must give exit code 2, nothing on stderr but one ``lat...`` line
that matches the expected text (no traceback, no progress bar, no notice), and leave nothing new
behind (no run folder, no output file).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from lat.cli import main
from lat.config import load_config, to_yaml

SMOKE = ["experiment=smoke"]
FIFO = "<fifo>"
"""A file whose content is this is made a named pipe."""


def _jsonl(rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def _config_yaml(*overrides: str) -> str:
    """What ``lat config`` prints for the smoke experiment with ``overrides`` (run root: the test folder)."""
    return to_yaml(load_config([*SMOKE, "run.root=/__tmp__/runs", *overrides])).replace("/__tmp__", "{tmp}")


GOOD_ROW = {"question": "What is 2 + 3?", "answer": "2 + 3 = 5\n#### 5"}
PAIR = _jsonl([{"input": "What is 2 + 3?", "output": "2 + 3 = 5"}])
RUN_CONFIG = _config_yaml()
RUN_METRICS = json.dumps({"safety/rsr": 0.9, "global_step": 4})
GRID = "method: grid\ncommand: ['${interpreter}', -m, lat, train, experiment=smoke, '${args_no_hyphens}']\nparameters:\n  train.lr: {values: [0.001]}\n"

# Each dict: name -> (files to create {name: text}, argv (``{tmp}`` = the test folder), expected message regex).
# ``{tmp}`` is replaced in file texts too; bytes are written as they are; FIFO makes a named pipe.


def _preview(*extra: str, src: str = "in.jsonl", out: str = "out.jsonl") -> list[str]:
    return ["preview", "--input_file", f"{{tmp}}/{src}", "--output_file", f"{{tmp}}/{out}", *extra]


PREVIEW = {
    "preview: without input": ({}, ["preview", "--mode", "virtual"], r"required"),
    "preview: missing input file": ({}, _preview("--mode", "virtual", src="none.jsonl"), r"none\.jsonl: no such file"),
    "preview: input file is a directory": ({"in.jsonl/x": ""}, _preview("--mode", "virtual"), r"in\.jsonl: is a directory, not a file"),
    "preview: input file is a FIFO": ({"in.jsonl": FIFO}, _preview("--mode", "virtual"), r"in\.jsonl: is not a regular file"),
    "preview: output path is a directory": (
        {"in.jsonl": PAIR, "od/x": ""},
        _preview("--mode", "virtual", "--output_format", "jsonl", out="od"),
        r"od: is a directory; give a file path to write",
    ),
    "preview: output file under a file": (
        {"in.jsonl": PAIR, "f": "x"},
        _preview("--mode", "virtual", out="f/out.jsonl"),
        r"f/out\.jsonl: .*f is a file, not a folder",
    ),
    "preview: output file is the input file": (
        {"in.jsonl": PAIR},
        _preview("--mode", "virtual", out="in.jsonl"),
        r"--output_file: .*in\.jsonl is the input file",
    ),
    "preview: missing --output_file": ({"in.jsonl": PAIR}, ["preview", "--input_file", "{tmp}/in.jsonl", "--mode", "virtual"], r"required: --output_file"),
    "preview: unknown mode": ({"in.jsonl": PAIR}, _preview("--mode", "sideways"), r"preview\.mode: unknown strategy 'sideways'"),
    "preview: m = 0": ({"in.jsonl": PAIR}, _preview("--mode", "real", "--m", "0", "--tokenizer_path", "embedded"), r"preview\.m: must be >= 1, got 0"),
    "preview: negative m": ({"in.jsonl": PAIR}, _preview("--mode", "real", "--m", "-3"), r"preview\.m: must be >= 1, got -3"),
    "preview: m not an integer": ({"in.jsonl": PAIR}, _preview("--mode", "real", "--m", "six"), r"argument --m: invalid int value: 'six'"),
    "preview: seed not an integer": ({"in.jsonl": PAIR}, _preview("--mode", "virtual", "--seed", "x"), r"argument --seed: invalid int value"),
    "preview: m_min > m_max": ({"in.jsonl": PAIR}, _preview("--mode", "real_range", "--m_min", "5", "--m_max", "2"), r"need 1 <= m_min <= m_max, got 5\.\.2"),
    "preview: m_min = 0": ({"in.jsonl": PAIR}, _preview("--mode", "real_range", "--m_min", "0"), r"need 1 <= m_min <= m_max, got 0\.\.12"),
    "preview: real mode without a tokenizer": ({"in.jsonl": PAIR}, _preview("--mode", "real"), r"--tokenizer_path is required for --mode real"),
    "preview: tokenizer path that does not exist": (
        {"in.jsonl": PAIR},
        _preview("--mode", "real", "--tokenizer_path", "{tmp}/no_tok"),
        r"tokenizer '.*no_tok': no such folder",
    ),
    "preview: adaptive mode outside training": (
        {"in.jsonl": PAIR},
        _preview("--mode", "adaptive", "--tokenizer_path", "embedded"),
        r"preview\.mode=adaptive: .*lat train",
    ),
    "preview: prefix pool without prefixes": (
        {"in.jsonl": PAIR},
        _preview("--mode", "virtual_pool", "--prefix_pool"),
        r"--prefix_pool.*expected at least one argument",
    ),
    "preview: unknown option": ({"in.jsonl": PAIR}, _preview("--mode", "virtual", "--frob", "1"), r"unrecognized arguments: --frob 1"),
    "preview: dotted override given to preview": ({"in.jsonl": PAIR}, _preview("--mode", "virtual", "preview.m=3"), r"unrecognized arguments: preview\.m=3"),
    "preview: input field missing in a record": (
        {"in.jsonl": _jsonl([{"question": "q", "output": "a"}])},
        _preview("--mode", "virtual"),
        r"in\.jsonl: line 1: field 'input': missing",
    ),
    "preview: --input_field missing in a record": (
        {"in.jsonl": PAIR},
        _preview("--mode", "virtual", "--input_field", "instruction"),
        r"line 1: field 'instruction': missing",
    ),
    "preview: output field missing in a later record": (
        {"in.jsonl": PAIR + _jsonl([{"input": "q"}])},
        _preview("--mode", "virtual"),
        r"in\.jsonl: line 2: field 'output': missing",
    ),
    "preview: field that is not a string": (
        {"in.jsonl": _jsonl([{"input": ["q"], "output": "a"}])},
        _preview("--mode", "virtual"),
        r"line 1: field 'input': expected a string, got list",
    ),
    "preview: empty instruction": ({"in.jsonl": _jsonl([{"input": "", "output": "a"}])}, _preview("--mode", "virtual"), r"line 1: field 'input': empty"),
    "preview: csv without the column": (
        {"in.csv": "input,answer\nq,a\n"},
        _preview("--mode", "virtual", src="in.csv", out="out.csv"),
        r"in\.csv: row 1: field 'output': missing",
    ),
    "preview: csv row with more values than columns": (
        {"in.csv": "input,output\nq,a,z\n"},
        _preview("--mode", "virtual", src="in.csv", out="out.csv"),
        r"in\.csv: row 1: more values than header columns",
    ),
    "preview: invalid JSON line": ({"in.jsonl": PAIR + '{"input": \n'}, _preview("--mode", "virtual"), r"in\.jsonl: line 2: invalid JSON"),
    "preview: empty file": ({"in.jsonl": ""}, _preview("--mode", "virtual"), r"in\.jsonl: no records \(empty file\)"),
    "preview: only blank lines": ({"in.jsonl": "\n  \n\n"}, _preview("--mode", "virtual"), r"in\.jsonl: no records"),
    "preview: json file that is not a list": (
        {"in.json": json.dumps({"input": "q", "output": "a"})},
        _preview("--mode", "virtual", src="in.json", out="out.json"),
        r"in\.json: expected a JSON list of objects, got dict",
    ),
    "preview: json list of numbers": (
        {"in.json": "[1, 2]"},
        _preview("--mode", "virtual", src="in.json", out="out.json"),
        r"in\.json: record 1: expected a JSON object, got int",
    ),
    "preview: jsonl line that is a string": ({"in.jsonl": '"text"\n'}, _preview("--mode", "virtual"), r"in\.jsonl: line 1: expected a JSON object, got str"),
    "preview: not UTF-8": ({"in.jsonl": b"\xff\xfe{}\n"}, _preview("--mode", "virtual"), r"in\.jsonl: not UTF-8 text"),
    "preview: unknown input extension": ({"in.txt": PAIR}, _preview("--mode", "virtual", src="in.txt"), r"in\.txt: cannot tell the format from the extension"),
    "preview: unknown output extension": (
        {"in.jsonl": PAIR},
        _preview("--mode", "virtual", out="out.txt"),
        r"out\.txt: cannot tell the format from the extension",
    ),
    "preview: --input_format not a format": (
        {"in.jsonl": PAIR},
        _preview("--mode", "virtual", "--input_format", "xml"),
        r"--input_format.*invalid choice: 'xml'",
    ),
    "preview: --input_format json on a jsonl file": (
        {"in.jsonl": PAIR + PAIR},
        _preview("--mode", "virtual", "--input_format", "json"),
        r"in\.jsonl: line 2: invalid JSON \(Extra data",
    ),
}


def _config_file(text: str | bytes) -> tuple[dict, list[str]]:
    return {"c.yaml": text}, ["config", "config={tmp}/c.yaml"]


CONFIG = {
    "config: unsafe YAML tag": (*_config_file("train:\n  lr: !!python/object/apply:os.getcwd []\n"), r"c\.yaml"),
    "config: file that is not a mapping": (*_config_file("- 1\n- 2\n"), r"c\.yaml: expected a mapping at the top level"),
    "config: unknown key in a config file": (*_config_file("train:\n  nope: 1\n"), r"c\.yaml\): unknown key 'train\.nope'"),
    "config: unknown section in a config file": (*_config_file("trian:\n  lr: 0.1\n"), r"c\.yaml\): unknown key 'trian'"),
    "config: section given as a list": (*_config_file("lora: [1, 2]\n"), r"c\.yaml\): lora: expected a mapping of settings, got a list"),
    "config: section given as a number": (*_config_file("train: 3\n"), r"c\.yaml\): train: expected a mapping of settings, got 3"),
    "config: nested section given as a list": (*_config_file("eval:\n  judge: [keyword]\n"), r"eval\.judge: expected a mapping of settings, got a list"),
    "config: section set to null": (*_config_file("train: null\n"), r"c\.yaml\): train: .*not Optional"),
    "config: list setting given a mapping": (*_config_file("data:\n  probes: {name: x}\n"), r"c\.yaml\): data\.probes: expected a list, got a mapping"),
    "config: list setting given a number": (*_config_file("eval:\n  jsr_k: 3\n"), r"c\.yaml\): eval\.jsr_k: expected a list, got 3"),
    "config: methods given as a mapping": (*_config_file("methods: {name: x}\n"), r"methods: expected a list, got a mapping"),
    "config: probe set given as a string": (*_config_file("data:\n  probes:\n    - harmful\n"), r"c\.yaml\): data\.probes\[0\]: .*ProbeConfig"),
    "config: unknown key in a probe set": (*_config_file("data:\n  probes:\n    - name: x\n      pth: y.jsonl\n"), r"c\.yaml\): unknown key 'pth'"),
    "config: value of the wrong type in a file": (*_config_file("train:\n  epochs: many\n"), r"c\.yaml\): train\.epochs: Value 'many'.*Integer"),
    "config: yes/no value that is not a bool": (*_config_file("lora:\n  enabled: maybe\n"), r"lora\.enabled: Value 'maybe' is not a valid bool"),
    "config: YAML error names the line and column": (*_config_file("train:\n  lr: 1\n bad: [\n"), r"c\.yaml: invalid YAML at line 3, column 2"),
    "config: tab in YAML": (*_config_file("train:\n\tlr: 1\n"), r"c\.yaml: invalid YAML at line 2, column 1 \(found character"),
    "config: duplicate key in YAML": (*_config_file("train:\n  lr: 1\n  lr: 2\n"), r"c\.yaml: invalid YAML at line 3.*duplicate key lr"),
    "config: config file not UTF-8": (*_config_file(b"train:\n  lr: \xff\n"), r"c\.yaml: invalid YAML .*utf-8"),
    "config: a directory as config=": ({"cd/x": ""}, ["config", "config={tmp}/cd"], r"cd: is a directory, not a file"),
    "config: unknown preset name": ({}, ["config", "preview=sideways"], r"preview=sideways: no sideways\.yaml in .*known: real"),
    "config: unknown data preset": ({}, ["config", "data=nope"], r"data=nope: no nope\.yaml .*known: gsm8k"),
    "config: unknown method file": ({}, ["config", "method=nope"], r"method=nope: no nope\.yaml .*known: adaptive"),
    "config: section name given a file name": ({}, ["config", "train=3"], r"train=3: no 3\.yaml"),
    "config: experiment defaults not a mapping": (
        {"configs/experiment/x.yaml": "defaults: [model]\n"},
        ["config", "experiment=x"],
        r"x\.yaml: 'defaults' must map a group to a file name",
    ),
    "config: experiment that extends itself": (
        {"configs/experiment/x.yaml": "defaults:\n  experiment: x\n"},
        ["config", "experiment=x"],
        r"x\.yaml: defaults\.experiment names the experiment itself",
    ),
    "config: experiment defaults with an unknown group": (
        {"configs/experiment/x.yaml": "defaults:\n  nope: tiny\n"},
        ["config", "experiment=x"],
        r"nope=tiny: not a config group; groups: model",
    ),
    "config: experiment defaults naming a missing file": (
        {"configs/experiment/x.yaml": "defaults:\n  model: huge\n"},
        ["config", "experiment=x"],
        r"model=huge: no huge\.yaml .*known: embedded, tiny",
    ),
    "config: method file with an unknown key": (
        {"configs/method/m.yaml": "train:\n  nope: 1\n"},
        ["config", "method=m"],
        r"config \(method=m\): unknown key 'train\.nope'",
    ),
    "config: a method override with an unknown key": (
        *_config_file("methods:\n  - name: x\n    overrides: [train.nope=1]\n"),
        r"method x: config \(method x: train\.nope=1\): unknown key 'train\.nope'",
    ),
    "config: --list with overrides": ({}, ["config", "--list", "junk"], r"--list takes no overrides \(got junk\)"),
    "config: --list with an unknown option": ({}, ["config", "--list", "--frob"], r"unrecognized arguments: --frob"),
    "config: override without '='": ({}, ["config", "train.lr"], r"override 'train\.lr': expected key=value"),
    "config: override with an empty key": ({}, ["config", "=3"], r"override '=3': expected key=value"),
    "config: override value that is not YAML": ({}, ["config", "train.betas=[0.5,"], r"override 'train\.betas=\[0\.5,': invalid YAML value"),
    "config: override with an unclosed quote": ({}, ["config", "run.name='abc"], r"override \"run\.name='abc\": invalid YAML value"),
    "config: override indexing into a list": (
        {},
        ["config", *SMOKE, "data.probes[0].task=x"],
        r"data\.probes\[0\]\.task=x': list items cannot be set one by one",
    ),
    "config: override of an unknown section": ({}, ["config", "trian.lr=1"], r"config \(override 'trian\.lr=1'\): unknown key 'trian'"),
    "config: interpolation of a missing key": ({}, ["config", "train.lr=${oops}"], r"train\.lr: Interpolation key 'oops' not found"),
    "config: a range rule": ({}, ["config", *SMOKE, "train.lr=nan"], r"train\.lr: must be > 0 and finite, got nan"),
}

T = ["train", *SMOKE]
PROBE = "{name: p, path: 'pkg:assets/harmful_eval.jsonl', input_field: prompt, output_field: prompt"

TRAIN = {
    # ---- data files
    "train: missing data file": ({}, [*T, "data.train_path={tmp}/none.jsonl"], r"none\.jsonl.*(not found|no such|does not exist)"),
    "train: data file line with invalid JSON": (
        {"d.jsonl": _jsonl([GOOD_ROW, '{"question": "q", '])},
        [*T, "data.train_path={tmp}/d.jsonl"],
        r"d\.jsonl: line 2: invalid JSON",
    ),
    "train: data record missing a field": (
        {"d.jsonl": _jsonl([{"question": "q"}])},
        [*T, "data.train_path={tmp}/d.jsonl"],
        r"d\.jsonl: line 1: field 'answer': missing",
    ),
    "train: data field of the wrong type": (
        {"d.jsonl": _jsonl([{"question": "q", "answer": 4}])},
        [*T, "data.train_path={tmp}/d.jsonl"],
        r"line 1: field 'answer': expected a string, got int",
    ),
    "train: empty answer": ({"d.jsonl": _jsonl([{"question": "q", "answer": " "}])}, [*T, "data.train_path={tmp}/d.jsonl"], r"line 1: field 'answer': empty"),
    "train: empty data file": ({"d.jsonl": ""}, [*T, "data.train_path={tmp}/d.jsonl"], r"d\.jsonl: .*(no records|empty)"),
    "train: data record not an object": ({"d.jsonl": "[1, 2]\n"}, [*T, "data.train_path={tmp}/d.jsonl"], r"d\.jsonl: line 1: .*object"),
    "train: data file with an unknown extension": ({"d.txt": "hello\n"}, [*T, "data.train_path={tmp}/d.txt"], r"d\.txt: .*format"),
    "train: csv without the column": ({"d.csv": "question,solution\nq,a\n"}, [*T, "data.train_path={tmp}/d.csv"], r"d\.csv: .*field 'answer'"),
    "train: csv with only a header": ({"d.csv": "question,answer\n"}, [*T, "data.train_path={tmp}/d.csv"], r"d\.csv: no records"),
    "train: csv row with more values than columns": (
        {"d.csv": "question,answer\nq,a,b\n"},
        [*T, "data.train_path={tmp}/d.csv"],
        r"d\.csv: row 1: more values than header",
    ),
    "train: csv row with an empty answer": ({"d.csv": "question,answer\nq,\n"}, [*T, "data.train_path={tmp}/d.csv"], r"d\.csv: row 1: field 'answer': empty"),
    "train: json file that is not a list": ({"d.json": json.dumps({"question": "q"})}, [*T, "data.train_path={tmp}/d.json"], r"d\.json: .*list"),
    "train: json file with invalid JSON": ({"d.json": '[{"question": 1,,}]'}, [*T, "data.train_path={tmp}/d.json"], r"d\.json: line 1: invalid JSON"),
    "train: json list of strings": ({"d.json": '["q"]'}, [*T, "data.train_path={tmp}/d.json"], r"d\.json: record 1: expected a JSON object, got str"),
    "train: data file that is a directory": ({"d.jsonl/x": ""}, [*T, "data.train_path={tmp}/d.jsonl"], r"d\.jsonl: is a directory, not a file"),
    "train: data file that is a FIFO": ({"d.jsonl": FIFO}, [*T, "data.train_path={tmp}/d.jsonl"], r"d\.jsonl: is not a regular file"),
    "train: data.format csv on a jsonl file": (
        {"d.jsonl": _jsonl([GOOD_ROW])},
        [*T, "data.train_path={tmp}/d.jsonl", "data.format=csv"],
        r"d\.jsonl: no records",
    ),
    "train: unknown data format": ({}, [*T, "data.format=xml"], r"data\.format: unknown 'xml'; known: auto, jsonl"),
    "train: missing hf dataset": ({}, [*T, "data.train_path=hf:{tmp}/nohf"], r"hf:.*nohf: cannot load Hugging Face dataset"),
    "train: missing shipped file": ({}, [*T, "data.train_path=pkg:assets/none.jsonl"], r"assets/none\.jsonl: no such file"),
    "train: missing validation file": ({}, [*T, "data.val_path={tmp}/v.jsonl"], r"v\.jsonl: no such file"),
    "train: validation record missing a field": (
        {"v.jsonl": _jsonl([{"question": "q"}])},
        [*T, "data.val_path={tmp}/v.jsonl"],
        r"v\.jsonl: line 1: field 'answer': missing",
    ),
    "train: data.input_field not in the records": ({}, [*T, "data.input_field=prompt"], r"gsm8k_sample\.jsonl: line 1: field 'prompt': missing"),
    "train: missing safety mix file": ({}, [*T, "data.safety_mix=0.5", "data.safety_mix_path={tmp}/s.jsonl"], r"s\.jsonl: no such file"),
    "train: nothing fits max_length": (
        {"d.jsonl": _jsonl([GOOD_ROW])},
        [*T, "data.train_path={tmp}/d.jsonl", "data.max_length=8"],
        r"no example fits data\.max_length=8",
    ),
    "train: holdout larger than the data": (
        {"d.jsonl": _jsonl([GOOD_ROW] * 3)},
        [*T, "data.train_path={tmp}/d.jsonl", "data.val_size=5"],
        r"data\.val_size: 5 leaves no training records",
    ),
    # ---- probe sets
    "train: probe file missing": ({}, [*T, "data.probes=[{name: p, path: {tmp}/p.jsonl}]"], r"p\.jsonl: no such file"),
    "train: probe record missing its field": (
        {"p.jsonl": _jsonl([{"q": "x"}])},
        [*T, "data.probes=[{name: p, path: {tmp}/p.jsonl, task: instruction}]"],
        r"p\.jsonl: line 1: field 'instruction': missing",
    ),
    "train: probe set without a path": ({}, [*T, "data.probes=[{name: p}]"], r"data\.probes\[p\]\.path: not set"),
    "train: two probe sets with one name": ({}, [*T, f"data.probes=[{PROBE}}}, {PROBE}}}]"], r"data\.probes: two probe sets named 'p'"),
    "train: unknown probe answer source": (
        {},
        [*T, f"data.probes=[{PROBE}, answer_source: oracle}}]"],
        r"data\.probes\[p\]\.answer_source: unknown 'oracle'; known: field, model",
    ),
    "train: unknown probe task": ({}, [*T, f"data.probes=[{PROBE}, task: math}}]"], r"data\.probes\[p\]\.task: unknown task 'math'"),
    "train: probe limit 0": ({}, [*T, f"data.probes=[{PROBE}, max_samples: 0}}]"], r"data\.probes\[p\]\.max_samples: must be >= 1, got 0"),
    "train: unknown drift alarm probe": (
        {},
        [*T, "train.drift_alarm_kl=0.5", "train.drift_alarm_probe=harmfull"],
        r"train\.drift_alarm_probe: unknown 'harmfull'.*did you mean 'harmful'",
    ),
    "train: drift alarm without probe sets": ({}, [*T, "train.drift_alarm_kl=0.5", "data.probes=[]"], r"train\.drift_alarm_kl: needs a probe set"),
    # ---- config overrides and files
    "train: unknown key": ({}, [*T, "train.nope=1"], r"unknown key 'train\.nope'"),
    "train: value of the wrong type": ({}, [*T, "train.lr=fast"], r"train\.lr"),
    "train: float for an integer setting": ({}, [*T, "train.epochs=1.5"], r"train\.epochs: Value '1\.5'.*Integer"),
    "train: list setting given a word": ({}, [*T, "train.constrained_betas=x"], r"train\.constrained_betas: expected a list, got 'x'"),
    "train: setting one probe field by index": (
        {},
        [*T, "data.probes[0].answer_source=oracle"],
        r"list items cannot be set one by one; give the whole list \(data\.probes=",
    ),
    "train: unknown experiment": ({}, ["train", "experiment=nope"], r"experiment.*'nope'|nope\.yaml"),
    "train: unknown method": ({}, [*T, "method=nope"], r"method.*nope"),
    "train: unknown model preset": ({}, [*T, "model=nope"], r"model.*nope"),
    "train: missing config file": ({}, ["train", "config={tmp}/none.yaml"], r"none\.yaml"),
    "train: config file with invalid YAML": ({"c.yaml": "train: [lr: 1\n"}, ["train", "config={tmp}/c.yaml"], r"c\.yaml"),
    "train: argument without a value": ({}, [*T, "--train.lr"], r"unrecognized arguments: --train\.lr"),
    # ---- names and choices
    "train: preview m = 0": ({}, [*T, "preview.m=0"], r"preview\.m: must be >= 1, got 0"),
    "train: unknown preview mode": ({}, [*T, "preview.mode=sideways"], r"unknown strategy 'sideways'"),
    "train: preview m_min > m_max": (
        {},
        [*T, "preview.mode=real_range", "preview.m_min=5", "preview.m_max=2"],
        r"preview\.m_min/m_max: need 1 <= m_min <= m_max, got 5\.\.2",
    ),
    "train: empty prefix pool": ({}, [*T, "preview.mode=virtual_pool", "preview.prefix_pool=[]"], r"preview\.prefix_pool: empty"),
    "train: masking a vanilla preview": (
        {},
        [*T, "preview.mode=vanilla", "preview.mask_preview=true"],
        r"preview\.mask_preview: vanilla has no preview to mask",
    ),
    "train: unknown loss": ({}, [*T, "train.loss=nope"], r"train\.loss: unknown loss 'nope'"),
    "train: unknown schedule": ({}, [*T, "train.schedule=nope"], r"train\.schedule: unknown schedule 'nope'"),
    "train: unknown precision": ({}, [*T, "train.precision=bf17"], r"train\.precision: unknown 'bf17'"),
    "train: unknown starting point": ({}, [*T, "train.start_from=nope"], r"train\.start_from: unknown starting point 'nope'"),
    "train: unknown task": ({}, [*T, "data.task=math"], r"data\.task: unknown task 'math'; known: gsm8k"),
    "train: unknown judge": ({}, [*T, "eval.judge.name=gpt5"], r"eval\.judge\.name: unknown judge 'gpt5'; known: context, keyword"),
    "train: a benchmark preset given as a group": (
        {},
        [*T, "benchmark=advbench"],
        r"unknown key 'benchmark'; benchmark presets are a list: eval\.benchmarks=\[NAME, \.\.\.\]",
    ),
    "train: unknown benchmark": ({}, [*T, "eval.benchmarks=[advbnch]"], r"eval\.benchmarks: unknown benchmark 'advbnch'.*did you mean 'advbench'"),
    "train: benchmark file missing": ({}, [*T, "eval.benchmarks=[advbench:{tmp}/none.csv]"], r"eval\.benchmarks: advbench:.*none\.csv: no such file or folder"),
    "train: benchmark named twice": (
        {"a.csv": "goal,target\nx,y\n"},
        [*T, "eval.benchmarks=[advbench:{tmp}/a.csv,advbench]"],
        r"eval\.benchmarks: advbench is named twice",
    ),
    "train: context thresholds crossed": (
        {},
        [*T, "eval.judge.context_safe_below=0.8", "eval.judge.context_unsafe_from=0.2"],
        r"eval\.judge\.context_safe_below: must not exceed eval\.judge\.context_unsafe_from",
    ),
    "train: unknown extra judge": ({}, [*T, "eval.extra_judges=[keywrd]"], r"eval\.extra_judges: unknown judge 'keywrd'.*did you mean 'keyword'"),
    "train: unknown utility task": ({}, [*T, "eval.utility_task=nope"], r"eval\.utility_task: unknown utility task 'nope'"),
    "train: unknown model dtype": ({}, [*T, "model.dtype=float8"], r"model\.dtype: unknown 'float8'.*did you mean 'float32'"),
    "train: unknown evaluation precision": ({}, [*T, "eval.precision=fp8"], r"eval\.precision: unknown 'fp8'"),
    "train: unknown W&B mode": ({}, [*T, "logging.wandb_mode=sometimes"], r"logging\.wandb_mode: unknown 'sometimes'; known: offline, online, disabled"),
    "train: unknown accelerator": ({}, [*T, "train.accelerator=tpux"], r"train\.accelerator: unknown 'tpux'.*did you mean 'tpu'"),
    "train: unknown Lightning strategy": (
        {},
        [*T, "train.strategy=dpp"],
        r"train\.strategy: unknown strategy 'dpp'; known: auto, ddp, .*\(did you mean 'ddp'\?\)",
    ),
    "train: devices that are not indices": ({}, [*T, "train.devices=gpu0"], r"train\.devices: expected auto, a count \(4\) or device indices"),
    "train: packing with flash attention": (
        {},
        [*T, "data.packing=true", "model.attn_implementation=flash_attention_2"],
        r"data\.packing: .*flash_attention_2",
    ),
    # ---- range rules
    "train: safety mix out of range": ({}, [*T, "data.safety_mix=1.5"], r"data\.safety_mix: must be in \[0, 1\)"),
    "train: zero batch size": ({}, [*T, "data.batch_size=0"], r"data\.batch_size: must be >= 1, got 0"),
    "train: zero evaluation batch size": ({}, [*T, "data.eval_batch_size=0"], r"data\.eval_batch_size: must be >= 1, got 0"),
    "train: zero epochs": ({}, [*T, "train.epochs=0", "train.max_steps=-1"], r"train\.epochs: must be >= 1, got 0"),
    "train: zero max_steps": ({}, [*T, "train.max_steps=0"], r"train\.max_steps: must be -1 \(no limit\) or >= 1, got 0"),
    "train: negative learning rate": ({}, [*T, "train.lr=-1e-4"], r"train\.lr: must be > 0"),
    "train: infinite learning rate": ({}, [*T, "train.lr=inf"], r"train\.lr: must be > 0 and finite, got inf"),
    "train: zero accumulate_grad_batches": ({}, [*T, "train.accumulate_grad_batches=0"], r"train\.accumulate_grad_batches: must be >= 1, got 0"),
    "train: zero machines": ({}, [*T, "train.num_nodes=0"], r"train\.num_nodes: must be >= 1, got 0"),
    "train: negative gradient clip": ({}, [*T, "train.gradient_clip_val=-1"], r"train\.gradient_clip_val: must be >= 0, got -1\.0"),
    "train: negative weight decay": ({}, [*T, "train.weight_decay=-0.1"], r"train\.weight_decay: must be >= 0, got -0\.1"),
    "train: warm-up ratio above 1": ({}, [*T, "train.warmup_ratio=2"], r"train\.warmup_ratio: must be in \[0, 1\], got 2\.0"),
    "train: one AdamW beta": ({}, [*T, "train.betas=[0.5]"], r"train\.betas: must be two AdamW betas in \[0, 1\), got \[0\.5\]"),
    "train: negative checkpoint interval": ({}, [*T, "train.checkpoint_every_n_steps=-1"], r"train\.checkpoint_every_n_steps: must be >= 0, got -1"),
    "train: zero divergence positions": ({}, [*T, "train.divergence_positions=0"], r"train\.divergence_positions: must be >= 1, got 0"),
    "train: zero LoRA rank": ({}, [*T, "lora.r=0"], r"lora\.r: must be >= 1, got 0"),
    "train: LoRA dropout out of range": ({}, [*T, "lora.dropout=1.5"], r"lora\.dropout: must be in \[0, 1\], got 1\.5"),
    "train: negative preview dropout": ({}, [*T, "preview.dropout=-0.1"], r"preview\.dropout: must be in \[0, 1\], got -0\.1"),
    "train: negative answer-token mask": ({}, [*T, "preview.mask_answer_tokens=-1"], r"preview\.mask_answer_tokens: must be >= 0, got -1"),
    "train: JSR@k item 0": ({}, [*T, "eval.jsr_k=[3,0]"], r"eval\.jsr_k: every item must be >= 1, got \[3, 0\]"),
    "train: zero evaluation samples": ({}, [*T, "eval.max_samples=0"], r"eval\.max_samples: must be >= 1, got 0"),
    "train: zero training samples": ({}, [*T, "data.max_train_samples=0"], r"data\.max_train_samples: must be >= 1, got 0"),
    "train: negative validation size": ({}, [*T, "data.val_size=-1"], r"data\.val_size: must be >= 0, got -1"),
    "train: zero max_length": ({}, [*T, "data.max_length=0"], r"data\.max_length: must be >= 1, got 0"),
    "train: negative data workers": ({}, [*T, "data.num_workers=-1"], r"data\.num_workers: must be >= 0, got -1"),
    "train: SDFT ROUGE threshold above 1": ({}, [*T, "data.sdft_rouge_threshold=2"], r"data\.sdft_rouge_threshold: must be in \[0, 1\], got 2\.0"),
    "train: embedding judge threshold above 1": (
        {},
        [*T, "eval.judge.embedding_threshold=2"],
        r"eval\.judge\.embedding_threshold: must be in \[0, 1\], got 2\.0",
    ),
    # ---- run folders
    "train: run.name with '/'": ({}, [*T, "run.name=a/b"], r"run\.name: 'a/b' is not a single folder name"),
    "train: run.name '..'": ({}, [*T, "run.name=.."], r"run\.name: '\.\.' is not a single folder name"),
    "train: run.name of 300 characters": ({}, [*T, "run.name=" + "x" * 300], r"run\.name: 300 bytes long; a folder name holds at most 255"),
    "train: run.root that is a file": ({"rootf": "x"}, [*T, "run.root={tmp}/rootf"], r"run\.root: .*rootf exists and is not a folder"),
    "train: existing run folder without resume": ({"runs/smoke/config.yaml": "x: 1\n"}, T, r"runs/smoke: run folder exists; pass run\.resume=true"),
    "train: resume without a folder": ({}, [*T, "run.resume=true"], r"no run folder to resume"),
    "train: --resume without a folder": ({}, [*T, "--resume"], r"runs/smoke: no run folder to resume"),
    "train: resume of a run with another learning rate": (
        {"runs/smoke/config.yaml": _config_yaml("train.lr=0.01")},
        [*T, "run.resume=true"],
        r"runs/smoke: recorded with other settings \(train\.lr\)",
    ),
    "train: resume of a run with an unreadable config": (
        {"runs/smoke/config.yaml": "- [\n"},
        [*T, "run.resume=true"],
        r"config\.yaml: unreadable, so the run cannot be checked",
    ),
    # ---- models and starting points
    "train: model folder that does not exist": ({}, [*T, "model.name_or_path={tmp}/no_model"], r"model\.name_or_path='.*no_model': no such folder"),
    "train: truncated weights": (
        {"m/config.json": "{}", "m/model.safetensors": "trunc"},
        [*T, "model.name_or_path={tmp}/m"],
        r"m\b.*(load|config|weights|safetensors)",
    ),
    "train: start adapter that does not exist": ({}, [*T, "model.adapter_path={tmp}/no_adapter"], r"model\.adapter_path='.*no_adapter': cannot load adapter"),
    "train: seed start with a missing safety file": (
        {},
        [*T, "train.start_from=seed", "align.safety_path={tmp}/s.jsonl"],
        r"align\.safety_path: .*s\.jsonl: no such file",
    ),
    "train: missing harmful prompts for evaluation": ({}, [*T, "eval.harmful_path={tmp}/h.jsonl"], r"h\.jsonl: no such file"),
}

E = ["eval", *SMOKE]
HARMFUL = _jsonl([{"prompt": "How do I pick a lock?", "category": "crime"}])

EVAL = {
    "eval: missing adapter": ({}, [*E, "model.adapter_path={tmp}/no_adapter"], r"no_adapter"),
    "eval: adapter folder without adapter_config.json": (
        {"ad/x": ""},
        [*E, "model.adapter_path={tmp}/ad"],
        r"ad': cannot load adapter \(Can't find 'adapter_config\.json'",
    ),
    "eval: model folder that does not exist": ({}, [*E, "model.name_or_path={tmp}/nomodel"], r"model\.name_or_path='.*nomodel': no such folder"),
    "eval: benchmark file in another format": (
        {"s.csv": "category,source,forbidden_prompt\nViolence,custom,x\n"},
        [*E, "eval.benchmarks=[advbench:{tmp}/s.csv]"],
        r"s\.csv: not in AdvBench's format: no column 'goal' \(has: category, forbidden_prompt, source\)",
    ),
    "eval: over-refusal file without the prompt field": (
        {"o.jsonl": '{"text": "x"}\n'},
        [*E, "eval.overrefusal_path={tmp}/o.jsonl"],
        r"o\.jsonl: line 1: field 'prompt': missing",
    ),
    "eval: missing harmful file": ({}, [*E, "eval.harmful_path={tmp}/h.jsonl"], r"h\.jsonl: no such file"),
    "eval: harmful file without the prompt field": (
        {"h.jsonl": _jsonl([{"question": "x"}])},
        [*E, "eval.harmful_path={tmp}/h.jsonl"],
        r"h\.jsonl: line 1: field 'prompt': missing",
    ),
    "eval: harmful prompt field renamed": (
        {"h.jsonl": HARMFUL},
        [*E, "eval.harmful_path={tmp}/h.jsonl", "eval.harmful_prompt_field=instruction"],
        r"h\.jsonl: line 1: field 'instruction': missing",
    ),
    "eval: harmful response that is not a string": (
        {"h.jsonl": _jsonl([{"prompt": "x", "response": 3}])},
        [*E, "eval.harmful_path={tmp}/h.jsonl"],
        r"h\.jsonl: line 1: field 'response': expected a string, got int",
    ),
    "eval: harmful csv without the column": ({"h.csv": "question\nx\n"}, [*E, "eval.harmful_path={tmp}/h.csv"], r"h\.csv: row 1: field 'prompt': missing"),
    "eval: empty harmful file": ({"h.jsonl": ""}, [*E, "eval.harmful_path={tmp}/h.jsonl"], r"h\.jsonl: no records"),
    "eval: unknown harmful format": (
        {"h.jsonl": HARMFUL},
        [*E, "eval.harmful_path={tmp}/h.jsonl", "eval.harmful_format=xml"],
        r"eval\.harmful_format: unknown 'xml'",
    ),
    "eval: unknown judge": ({}, [*E, "eval.judge.name=gpt"], r"eval\.judge\.name: unknown judge 'gpt'"),
    "eval: unknown extra judge": ({}, [*E, "eval.extra_judges=[nope]"], r"eval\.extra_judges: unknown judge 'nope'"),
    "eval: LLM judge without its key": (
        {},
        [*E, "eval.judge.name=llm", "eval.judge.llm_api_key_env=LAT_TEST_NO_SUCH_KEY"],
        r"judge 'llm': environment variable LAT_TEST_NO_SUCH_KEY is not set",
    ),
    "eval: classifier judge without a model": ({}, [*E, "eval.judge.name=classifier"], r"judge 'classifier' needs judge\.classifier_path"),
    "eval: classifier judge model that does not exist": (
        {},
        [*E, "eval.judge.name=classifier", "eval.judge.classifier_path={tmp}/nocls"],
        r"judge 'classifier': .*nocls is not a Hugging Face model folder",
    ),
    "eval: missing utility file": ({}, [*E, "eval.utility_path={tmp}/u.jsonl"], r"u\.jsonl: no such file"),
    "eval: utility file with invalid JSON": ({"u.jsonl": "{\n"}, [*E, "eval.utility_path={tmp}/u.jsonl"], r"u\.jsonl: line 1: invalid JSON"),
    "eval: utility record without the task's field": (
        {"u.jsonl": _jsonl([{"q": 1}])},
        [*E, "eval.utility_path={tmp}/u.jsonl"],
        r"u\.jsonl: line 1: field 'question': missing",
    ),
    "eval: utility records of another task": ({}, [*E, "eval.utility_task=samsum"], r"arithmetic_test\.jsonl: line 1: field 'dialogue': missing"),
    "eval: unknown precision": ({}, [*E, "eval.precision=fp8"], r"eval\.precision: unknown 'fp8'"),
    "eval: existing run folder": ({"runs/smoke/config.yaml": "x: 1\n"}, E, r"runs/smoke: run folder exists"),
    "eval: seed start with a missing benign file": (
        {},
        [*E, "train.start_from=seed", "align.benign_path={tmp}/b.jsonl"],
        r"align\.benign_path: .*b\.jsonl: no such file",
    ),
}

A = ["align", *SMOKE]

ALIGN = {
    "align: unknown seed SFT dtype": ({}, [*A, "align.dtype=half"], r"align\.dtype: unknown 'half'"),
    "align: unknown precision": ({}, [*A, "align.precision=fp8"], r"align\.precision: unknown 'fp8'"),
    "align: unknown answer precision": ({}, [*A, "align.answer_precision=fp8"], r"align\.answer_precision: unknown 'fp8'"),
    "align: missing safety file": ({}, [*A, "align.safety_path={tmp}/s.jsonl"], r"align\.safety_path: .*s\.jsonl: no such file"),
    "align: missing benign file": ({}, [*A, "align.benign_path={tmp}/b.jsonl"], r"align\.benign_path: .*b\.jsonl: no such file"),
    "align: safety file that is a directory": ({"s/x": ""}, [*A, "align.safety_path={tmp}/s"], r"align\.safety_path: .*s: is a directory, not a file"),
    "align: safety record without a refusal": (
        {"s.jsonl": _jsonl([{"prompt": "p"}])},
        [*A, "align.safety_path={tmp}/s.jsonl"],
        r"s\.jsonl: line 1: field 'refusal': missing",
    ),
    "align: safety file with invalid JSON": ({"s.jsonl": "{\n"}, [*A, "align.safety_path={tmp}/s.jsonl"], r"s\.jsonl: line 1: invalid JSON"),
    "align: benign record without a prompt": (
        {"b.jsonl": _jsonl([{"question": "p"}])},
        [*A, "align.benign_path={tmp}/b.jsonl"],
        r"b\.jsonl: line 1: field 'prompt': missing",
    ),
    "align: zero steps": ({}, [*A, "align.steps=0"], r"align\.steps: must be >= 1, got 0"),
    "align: zero LoRA rank": ({}, [*A, "align.r=0"], r"align\.r: must be >= 1, got 0"),
    "align: LoRA dropout out of range": ({}, [*A, "align.lora_dropout=2"], r"align\.lora_dropout: must be in \[0, 1\], got 2\.0"),
    "align: zero safety examples": ({}, [*A, "align.max_safety=0"], r"align\.max_safety: must be >= 1, got 0"),
    "align: negative learning rate": ({}, [*A, "align.lr=-1"], r"align\.lr: must be > 0 and finite, got -1\.0"),
    "align: system prompts given a string": ({}, [*A, "align.system_prompts=hello"], r"align\.system_prompts: expected a list, got 'hello'"),
}

R = ["run", *SMOKE]

RUN = {
    "run: unknown strategy in a method": (
        {},
        [*R, "methods=[{name: x, overrides: [preview.mode=sideways]}]"],
        r"method x: preview\.mode: unknown strategy 'sideways'",
    ),
    "run: unknown key in a method": ({}, [*R, "methods=[{name: x, overrides: [train.nope=1]}]"], r"method x: config \(method x: train\.nope=1\): unknown key"),
    "run: method override without '='": ({}, [*R, "methods=[{name: x, overrides: [train.lr]}]"], r"method x: override 'train\.lr': expected key=value"),
    "run: unknown judge in a method": (
        {},
        [*R, "methods=[{name: x, overrides: [eval.judge.name=nope]}]"],
        r"method x: eval\.judge\.name: unknown judge 'nope'",
    ),
    "run: method name with '/'": ({}, [*R, "methods=[{name: a/b, overrides: []}]"], r"methods\[0\]\.name: 'a/b' is not a single folder name"),
    "run: two methods with one name": (
        {},
        [*R, "methods=[{name: a, overrides: []}, {name: a, overrides: [preview.mode=virtual]}]"],
        r"methods\[1\]\.name: 'a' is also the name of methods\[0\]",
    ),
    "run: method named seed": ({}, [*R, "methods=[{name: seed, overrides: []}]"], r"methods\[0\]\.name: 'seed' is the folder of the seed's own evaluation"),
    "run: methods given as a mapping": ({}, [*R, "methods={name: x}"], r"methods: expected a list, got a mapping"),
    "run: an experiment folder with other settings": (
        {"runs/smoke/experiment.yaml": "train:\n  lr: 0.5\n"},
        R,
        r"runs/smoke: holds an experiment run with other settings",
    ),
    "run: unreadable experiment.yaml": ({"runs/smoke/experiment.yaml": "- [\n"}, R, r"experiment\.yaml: unreadable"),
    "run: experiment.yaml that is a list": ({"runs/smoke/experiment.yaml": "- 1\n"}, R, r"experiment\.yaml: unreadable"),
    "run: run.root that is a file": ({"rootf": "x"}, [*R, "run.root={tmp}/rootf"], r"run\.root: .*rootf exists and is not a folder"),
    "run: run.name '..'": ({}, [*R, "run.name=.."], r"run\.name: '\.\.' is not a single folder name"),
    "run: missing safety file": ({}, [*R, "align.safety_path={tmp}/s.jsonl"], r"align\.safety_path: .*s\.jsonl: no such file"),
    "run: safety record without a refusal": (
        {"s.jsonl": _jsonl([{"prompt": "p"}])},
        [*R, "align.safety_path={tmp}/s.jsonl"],
        r"s\.jsonl: line 1: field 'refusal': missing",
    ),
}


def _sweep(text: str | bytes, *extra: str, dry: bool = True, files: dict | None = None) -> tuple[dict, list[str]]:
    return {"s.yaml": text, **(files or {})}, ["sweep", "{tmp}/s.yaml", *extra, "--root", "{tmp}/sw", *(["--dry-run"] if dry else [])]


SWEEP = {
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
    "sweep: file that is not a mapping": (*_sweep("- 1\n"), r"s\.yaml: a sweep file is a mapping"),
    "sweep: file not UTF-8": (*_sweep(b"method: grid\n\xff\xfe\n"), r"s\.yaml: not UTF-8 text"),
    "sweep: bayes on the local runner": (*_sweep("method: bayes\nparameters:\n  train.lr: {values: [0.1]}\n"), r"s\.yaml: method 'bayes' needs W&B"),
    "sweep: parameters given as a list": (*_sweep("method: grid\nparameters: [train.lr]\n"), r"s\.yaml: parameters: give at least one parameter"),
    "sweep: parameter given a bare value": (
        *_sweep("method: grid\nparameters:\n  train.lr: 0.1\n"),
        r"parameter 'train\.lr': expected a mapping such as \{values",
    ),
    "sweep: empty values": (*_sweep("method: grid\nparameters:\n  train.lr: {values: []}\n"), r"parameter 'train\.lr': 'values' must be a non-empty list"),
    "sweep: values that are not a list": (*_sweep("method: grid\nparameters:\n  train.lr: {values: 0.1}\n"), r"'values' must be a non-empty list"),
    "sweep: a value the config rejects": (
        *_sweep("method: grid\nparameters:\n  train.lr: {values: [0.1, -1]}\n"),
        r"s\.yaml: parameter 'train\.lr': train\.lr: must be > 0 and finite, got -1\.0",
    ),
    "sweep: a value of the wrong type": (
        *_sweep("method: grid\nparameters:\n  train.epochs: {values: [one]}\n"),
        r"s\.yaml: parameter 'train\.epochs': .*Value 'one'",
    ),
    "sweep: a section as a parameter": (
        *_sweep("method: grid\nparameters:\n  train: {values: [1]}\n"),
        r"parameter 'train': .*train: expected a mapping of settings",
    ),
    "sweep: parameter with leading dashes": (
        *_sweep("method: grid\nparameters:\n  --train.lr: {values: [0.1]}\n"),
        r"parameter '--train\.lr': use the flat dotted",
    ),
    "sweep: min above max": (
        *_sweep("method: random\nrun_cap: 2\nparameters:\n  train.lr: {min: 0.1, max: 0.01}\n"),
        r"parameter 'train\.lr': min 0\.1 > max 0\.01",
    ),
    "sweep: log-uniform from 0": (
        *_sweep("method: random\nrun_cap: 2\nparameters:\n  train.lr: {distribution: log_uniform_values, min: 0, max: 0.01}\n"),
        r"log_uniform_values needs min > 0",
    ),
    "sweep: unknown distribution": (
        *_sweep("method: random\nrun_cap: 2\nparameters:\n  train.lr: {distribution: normal, min: 0, max: 0.01}\n"),
        r"unknown distribution 'normal'.*did you mean 'uniform'",
    ),
    "sweep: non-numeric bound": (
        *_sweep("method: random\nrun_cap: 2\nparameters:\n  train.lr: {distribution: uniform, min: a, max: 0.01}\n"),
        r"uniform needs a numeric 'min'",
    ),
    "sweep: grid with a continuous distribution": (
        *_sweep("method: grid\nparameters:\n  train.lr: {min: 0.001, max: 0.01}\n"),
        r"a grid needs value or values, not uniform",
    ),
    "sweep: random search without a count": (
        *_sweep("method: random\nparameters:\n  train.lr: {min: 0.001, max: 0.01}\n"),
        r"random search needs run_cap in the file or --count",
    ),
    "sweep: run_cap 0": (
        *_sweep("method: random\nrun_cap: 0\nparameters:\n  train.lr: {min: 0.001, max: 0.01}\n"),
        r"run_cap: must be a positive integer, got 0",
    ),
    "sweep: seed that is not an integer": (*_sweep("seed: abc\n" + GRID), r"s\.yaml: seed: must be an integer, got 'abc'"),
    "sweep: name '..'": (*_sweep("name: ..\n" + GRID), r"s\.yaml: name: '\.\.' is not a single folder name"),
    "sweep: name with '/'": (*_sweep("name: a/b\n" + GRID), r"s\.yaml: name: 'a/b' is not a single folder name"),
    "sweep: command without the point's arguments": (
        *_sweep("method: grid\ncommand: [lat, train]\nparameters:\n  train.lr: {values: [0.1]}\n"),
        r"command: must be a list containing \$\{args\}",
    ),
    "sweep: command naming a program that does not exist": (
        *_sweep("method: grid\ncommand: [lat-no-such-program, '${args}']\nparameters:\n  train.lr: {values: [0.1]}\n", dry=False),
        r"command: 'lat-no-such-program' is not a program found on PATH",
    ),
    "sweep: a point the config rejects": (
        *_sweep("method: grid\nparameters:\n  preview.mode: {values: [real_range]}\n  preview.m_min: {values: [5]}\n  preview.m_max: {values: [2]}\n"),
        r"s\.yaml: point 0 \(preview\.mode=real_range.*\): preview\.m_min/m_max",
    ),
    "sweep: unknown experiment in the command": (
        *_sweep("method: grid\ncommand: [lat, train, experiment=nope, '${args_no_hyphens}']\nparameters:\n  train.lr: {values: [0.1]}\n"),
        r"experiment=nope: no nope\.yaml",
    ),
    "sweep: unknown key in the extra overrides": (*_sweep(GRID, "train.nope=1"), r"config \(override 'train\.nope=1'\): unknown key 'train\.nope'"),
    "sweep: --count 0": (*_sweep(GRID, "--count", "0"), r"argument --count: must be >= 1, got 0"),
    "sweep: --workers 0": (*_sweep(GRID, "--workers", "0"), r"argument --workers: must be >= 1, got 0"),
    "sweep: --count not a number": (*_sweep(GRID, "--count", "all"), r"argument --count: expected an integer >= 1, got 'all'"),
    "sweep: missing file": ({}, ["sweep", "{tmp}/none.yaml", "--root", "{tmp}/sw"], r"none\.yaml: cannot read sweep file \(No such file"),
    "sweep: a directory as the file": (
        {"sd.yaml/x": ""},
        ["sweep", "{tmp}/sd.yaml", "--root", "{tmp}/sw"],
        r"sd\.yaml: cannot read sweep file \(Is a directory",
    ),
    "sweep: unknown shipped sweep": ({}, ["sweep", "nosuchsweep", "--root", "{tmp}/sw"], r"sweep=nosuchsweep: no nosuchsweep\.yaml .*known: attack, lr_rank"),
    "sweep: damaged sweep.json": (*_sweep(GRID, dry=False, files={"sw/s/sweep.json": "{oops"}), r"sweep\.json: damaged sweep state"),
    "sweep: sweep.json points without a status": (
        *_sweep(GRID, dry=False, files={"sw/s/sweep.json": json.dumps({"points": [{"id": "000-x"}]})}),
        r"sweep\.json: damaged sweep state",
    ),
    "sweep: --root that is a file": (
        {"s.yaml": GRID, "rootf": "x"},
        ["sweep", "{tmp}/s.yaml", "--root", "{tmp}/rootf"],
        r"--root: .*rootf exists and is not a folder",
    ),
    "sweep: sweep folder that is a file": (*_sweep(GRID, dry=False, files={"sw/s": "x"}), r"sweep folder: .*sw/s exists and is not a folder"),
}


def _report(**files: str | bytes) -> dict:
    """A finished run folder ``runs/a`` with some of its files replaced (``div`` = divergence.csv)."""
    names = {"config": "config.yaml", "metrics": "metrics.json", "div": "divergence.csv", "samples": "samples.jsonl"}
    run = {"config.yaml": RUN_CONFIG, "metrics.json": RUN_METRICS, **{names[k]: v for k, v in files.items()}}
    return {f"runs/a/{k}": v for k, v in run.items()}


REP = ["report", "{tmp}/runs", "--out", "{tmp}/rep"]

REPORT = {
    "report: a folder that does not exist": ({}, ["report", "{tmp}/nothing"], r"nothing"),
    "report: a folder with no runs": ({"runs/x/notes.txt": ""}, REP, r"runs: no finished runs \(folders with config\.yaml and metrics\.json\)"),
    "report: a file instead of a folder": ({"f.txt": "x"}, ["report", "{tmp}/f.txt", "--out", "{tmp}/rep"], r"f\.txt: no finished runs"),
    "report: metrics.json that is a JSON list": (_report(metrics="[1, 2]"), REP, r"runs/a/metrics\.json: expected a JSON object, got list"),
    "report: metrics.json with invalid JSON": (_report(metrics="{oops"), REP, r"runs/a/metrics\.json: line 1: invalid JSON"),
    "report: metrics.json not UTF-8": (_report(metrics=b"\xff"), REP, r"runs/a/metrics\.json: not UTF-8 text"),
    "report: metrics.json that is a directory": (
        {"runs/a/config.yaml": RUN_CONFIG, "runs/a/metrics.json/x": ""},
        REP,
        r"runs/a/metrics\.json: cannot read \(Is a directory\)",
    ),
    "report: config.yaml that is a list": (_report(config="- 1\n"), REP, r"runs/a/config\.yaml: expected a mapping of settings, got list"),
    "report: config.yaml that is a number": (_report(config="3\n"), REP, r"runs/a/config\.yaml: expected a mapping of settings, got int"),
    "report: config.yaml with invalid YAML": (_report(config="a: [\n"), REP, r"runs/a/config\.yaml: invalid YAML at line 2"),
    "report: config.yaml that is a directory": (
        {"runs/a/config.yaml/x": "", "runs/a/metrics.json": RUN_METRICS},
        REP,
        r"runs/a/config\.yaml: cannot read \(Is a directory\)",
    ),
    "report: probe sets that are not a list": (
        _report(config=RUN_CONFIG.replace("  probes:", "  probes: 3\n  old_probes:")),
        REP,
        r"config\.yaml: data\.probes: expected a list of probe sets",
    ),
    "report: probe set without a string name": (
        _report(config=RUN_CONFIG.replace("- name: harmful", "- name: [1]")),
        REP,
        r"config\.yaml: data\.probes: expected a list of probe sets, each with a name",
    ),
    "report: divergence.csv lacking columns": (_report(div="a,b\n1,2\n"), REP, r"divergence\.csv: line 1: missing columns probe, step, position, kl"),
    "report: divergence.csv with a non-numeric step": (
        _report(div="epoch,step,probe,position,count,kl\n0,x,harmful,1,8,0.1\n"),
        REP,
        r"divergence\.csv: line 2: step, position and kl must be numbers",
    ),
    "report: divergence.csv not UTF-8": (_report(div=b"\xff\n"), REP, r"divergence\.csv: not UTF-8 text"),
    "report: divergence.csv that is a directory": ({**_report(), "runs/a/divergence.csv/x": ""}, REP, r"divergence\.csv: cannot read \(Is a directory\)"),
    "report: samples.jsonl with an invalid line": (_report(samples="{\n"), REP, r"samples\.jsonl: line 1: not valid JSON"),
    "report: samples.jsonl row without a metric": (_report(samples="{}\n"), REP, r"samples\.jsonl: line 1: expected an object with a 'metric' field"),
    "report: samples.jsonl with a text step": (
        _report(samples=_jsonl([{"metric": "rsr", "step": "x"}])),
        REP,
        r"samples\.jsonl: line 1: field 'step': expected an integer",
    ),
    "report: samples.jsonl not UTF-8": (_report(samples=b"\xff\n"), REP, r"samples\.jsonl: not UTF-8 text"),
    "report: --group-by with an unknown key": (_report(), [*REP, "--group-by", "train.nope"], r"--group-by: no run has the config key 'train\.nope'"),
    "report: --group-by with an empty key": (_report(), [*REP, "--group-by", "preview.mode,"], r"--group-by: no run has the config key ''"),
    "report: --out that is a file": ({**_report(), "repf": "x"}, ["report", "{tmp}/runs", "--out", "{tmp}/repf"], r"--out: .*repf exists and is not a folder"),
    "report: --out under a file": (
        {**_report(), "repf": "x"},
        ["report", "{tmp}/runs", "--out", "{tmp}/repf/r"],
        r"repf/r/report\.md: cannot write it: .*repf is a file",
    ),
}

LAT = {
    "lat: unknown command": ({}, ["frobnicate"], r"invalid choice: 'frobnicate'"),
    "lat: no command": ({}, [], r"required: command"),
}

GEN = _jsonl([{"prompt": "p", "response": "I cannot help."}])
JUDGE = {
    "judge: missing input file": ({}, ["judge", "{tmp}/none.jsonl", "--out", "{tmp}/o.jsonl"], r"none\.jsonl"),
    "judge: record without a response": (
        {"g.jsonl": _jsonl([{"prompt": "p"}])},
        ["judge", "{tmp}/g.jsonl", "--out", "{tmp}/o.jsonl"],
        r"g\.jsonl: line 1: field 'response': missing",
    ),
    "judge: record whose prefix is not text": (
        {"g.jsonl": _jsonl([{"prompt": "p", "response": "r", "prefix": 3}])},
        ["judge", "{tmp}/g.jsonl", "--out", "{tmp}/o.jsonl"],
        r"g\.jsonl: line 1: field 'prefix': expected a string",
    ),
    "judge: unknown judge": (
        {"g.jsonl": GEN},
        ["judge", "{tmp}/g.jsonl", "--out", "{tmp}/o.jsonl", "--judge", "keywrod"],
        r"--judge: unknown judge 'keywrod'.*keyword",
    ),
    "judge: output is the input": ({"g.jsonl": GEN}, ["judge", "{tmp}/g.jsonl", "--out", "{tmp}/g.jsonl"], r"g\.jsonl: also an input"),
    "judge: output is a directory": ({"g.jsonl": GEN, "o/x": ""}, ["judge", "{tmp}/g.jsonl", "--out", "{tmp}/o"], r"o: is a directory"),
    "judge: without --out": ({"g.jsonl": GEN}, ["judge", "{tmp}/g.jsonl"], r"--out"),
    "judge: unknown judge setting": ({"g.jsonl": GEN}, ["judge", "{tmp}/g.jsonl", "--out", "{tmp}/o.jsonl", "eval.judge.nope=1"], r"eval\.judge\.nope"),
}

GROUPS = {
    "preview": PREVIEW,
    "config": CONFIG,
    "train": TRAIN,
    "eval": EVAL,
    "align": ALIGN,
    "run": RUN,
    "sweep": SWEEP,
    "report": REPORT,
    "judge": JUDGE,
    "lat": LAT,
}
CASES = {name: case for group in GROUPS.values() for name, case in group.items()}


def _make(tmp: Path, files: dict) -> None:
    for name, content in files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content == FIFO:
            os.mkfifo(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content.replace("{tmp}", str(tmp)))


def _tree(tmp: Path) -> set[str]:
    return {str(p.relative_to(tmp)) for p in tmp.rglob("*")}


def test_the_suite_is_over_a_hundred_distinct_inputs_for_every_command():
    assert len(CASES) == sum(len(g) for g in GROUPS.values())  # no name filed twice
    assert len(CASES) >= 100 and len({(tuple(sorted(f.items())), tuple(a)) for f, a, _ in CASES.values()}) == len(CASES)
    for command, group in GROUPS.items():
        assert group, command
        assert all(name.startswith(f"{command}: ") for name in group), command
        assert command == "lat" or all(argv[0] == command for _, argv, _ in group.values()), command


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_exits_2_with_one_line_and_no_output(name, tmp_path, monkeypatch, capsys):
    files, argv, pattern = CASES[name]
    _make(tmp_path, files)
    monkeypatch.chdir(tmp_path)  # anything written to the default run root would land here
    before = _tree(tmp_path)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if argv[:1] in (["train"], ["eval"], ["run"]) and not any(a.startswith("run.root=") for a in argv):
        argv.append(f"run.root={tmp_path}/runs")
    try:
        code = main(argv)
    except SystemExit as e:  # argparse usage errors
        code = e.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("lat"), err
    assert re.search(pattern, err), err
    assert _tree(tmp_path) == before, f"left behind: {_tree(tmp_path) - before}"
