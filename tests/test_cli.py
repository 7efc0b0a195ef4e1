"""The ``lat`` CLI: `lat preview` equals the paper's script's output; bad input exits 2 in one line."""

from __future__ import annotations

import json

import pytest

from lat.cli import main
from lat.data.preview import reference_prefix
from lat.models.embedded import embedded_model_dir
from tests.conftest import run_lat

C = " The answer begins with: "
P = "Let's solve this problem. "


def reference_script_output(records, mode, fin, fout, tok=None, m=6, fmt="jsonl"):
    """What the paper's preprocessing script writes, record by record (its documented semantics)."""
    out = []
    for item in (dict(r) for r in records):
        if mode == "real":
            item[fin] = item[fin] + C + reference_prefix(item[fout], m, tok)
        else:
            item[fin] = item[fin] + C + P
            item[fout] = P + item[fout]
        out.append(item)
    if fmt == "jsonl":
        return "".join(json.dumps(i) + "\n" for i in out)
    return json.dumps(out, ensure_ascii=False, indent=4)


@pytest.mark.parametrize("mode, m, fmt", [("real", 6, "jsonl"), ("real", 2, "json"), ("virtual", 6, "jsonl"), ("virtual", 6, "json")])
def test_preview_matches_reference_script_byte_for_byte(tmp_path, smol_tok, shared_datasets, mode, m, fmt):
    src = shared_datasets / "gsm8k" / "test.jsonl"
    records = [json.loads(line) for line in open(src)]
    out = tmp_path / f"out.{fmt}"
    args = [
        "preview",
        "--input_file",
        str(src),
        "--output_file",
        str(out),
        "--input_format",
        "jsonl",
        "--output_format",
        fmt,
        "--input_field",
        "question",
        "--output_field",
        "answer",
        "--mode",
        mode,
        "--m",
        str(m),
    ]
    if mode == "real":
        args += ["--tokenizer_path", str(embedded_model_dir(build=False))]
    assert main(args) == 0
    assert out.read_text(encoding="utf-8") == reference_script_output(records, mode, "question", "answer", smol_tok, m, fmt)


def test_preview_samsum_json_with_hyphenated_options(tmp_path, smol_tok, shared_datasets):
    src = shared_datasets / "samsum" / "test.json"
    out = tmp_path / "o.json"
    assert (
        main(
            [
                "preview",
                "--input-file",
                str(src),
                "--output-file",
                str(out),
                "--input-field",
                "dialogue",
                "--output-field",
                "summary",
                "--mode",
                "real",
                "--m",
                "4",
                "--tokenizer-path",
                "embedded",
            ]
        )
        == 0
    )
    records = json.load(open(src))
    assert out.read_text(encoding="utf-8") == reference_script_output(records, "real", "dialogue", "summary", smol_tok, 4, "json")


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


BAD_INPUTS = [
    ([{"input": "q", "output": "a"}, '{"input": "q", "output": '], ["--mode", "virtual"], r"in\.jsonl: line 2: invalid JSON"),
    ([{"input": "q"}], ["--mode", "virtual"], r"in\.jsonl: line 1: field 'output': missing"),
    ([{"input": "q", "output": 7}], ["--mode", "virtual"], r"line 1: field 'output': expected a string, got int"),
    ([{"input": "q", "output": ""}], ["--mode", "virtual"], r"line 1: field 'output': empty"),
    ([{"input": 3, "output": "a"}], ["--mode", "virtual"], r"line 1: field 'input': expected a string"),
    ([{"input": "q", "output": "a"}], ["--mode", "real", "--m", "0", "--tokenizer_path", "x"], r"preview\.m: must be >= 1, got 0"),
    ([{"input": "q", "output": "a"}], ["--mode", "sideways"], r"unknown strategy 'sideways'; known: vanilla, real"),
    ([{"input": "q", "output": "a"}], ["--mode", "real"], r"--tokenizer_path is required"),
    ([{"input": "q", "output": "a"}], ["--mode", "real", "--tokenizer_path", "/no/such/tok"], r"tokenizer '/no/such/tok': no such folder"),
]


@pytest.mark.parametrize("rows, extra, needle", BAD_INPUTS)
def test_bad_preview_input_exits_2_in_one_line_without_output(tmp_path, capsys, rows, extra, needle):
    src = _jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    assert main(["preview", "--input_file", str(src), "--output_file", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert __import__("re").search(needle, err), err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_real_subprocess_reports_user_errors_without_traceback(tmp_path):
    src = _jsonl(tmp_path / "in.jsonl", ['{"input": "q", "output": "a"}', "{oops"])
    res = run_lat("preview", "--input_file", str(src), "--output_file", str(tmp_path / "o.jsonl"), "--mode", "virtual")
    assert res.returncode == 2
    assert res.stderr.strip() == f"lat: {src}: line 2: invalid JSON (Expecting property name enclosed in double quotes at column 2)"
    assert "Traceback" not in res.stderr and not (tmp_path / "o.jsonl").exists()
    res = run_lat("preview", "--input_file", str(src))
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "required" in res.stderr
    res = run_lat("config", "--data.nope=1")
    assert res.returncode == 2 and res.stderr.strip() == "lat: config (override 'data.nope=1'): unknown key 'data.nope'"
    res = run_lat("frobnicate")
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_config_command_prints_resolved_yaml(capsys):
    assert main(["config", "experiment=smoke", "--preview.m=3"]) == 0
    out = capsys.readouterr().out
    assert "experiment: smoke" in out and "  m: 3" in out and "name_or_path: tiny" in out


def test_sweep_wandb_without_project_takes_logging_project(tmp_path, monkeypatch):
    from lat.workflows import sweep as sweep_workflow

    seen = {}
    monkeypatch.setattr(sweep_workflow, "run_wandb", lambda sweep, project, entity, count: seen.update(project=project) or 0)
    assert main(["sweep", "smoke", "logging.project=from-config", "--wandb"]) == 0
    assert seen == {"project": "from-config"}
