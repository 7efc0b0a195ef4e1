"""Record I/O: formats, field checks with one-line locations, atomic byte-compatible writes."""

from __future__ import annotations

import json

import pytest

from lat.core.errors import UserError
from lat.data.records import read_records, write_records


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_skips_blank_lines_and_keeps_line_numbers(tmp_path):
    p = _write(tmp_path / "a.jsonl", '{"q": "x", "a": "y"}\n\n{"q": "z", "a": 3}\n')
    rs = read_records(p)
    assert rs.records == [{"q": "x", "a": "y"}, {"q": "z", "a": 3}]
    assert rs.locations == ["line 1", "line 3"]
    with pytest.raises(UserError, match=r"a\.jsonl: line 3: field 'a': expected a string, got int"):
        rs.texts("a")


def test_json_list_and_csv(tmp_path):
    pj = _write(tmp_path / "a.json", json.dumps([{"q": "x", "a": "y"}]))
    pc = _write(tmp_path / "a.csv", 'q,a\nx,"multi\nline"\n')
    assert read_records(pj).records == [{"q": "x", "a": "y"}]
    assert read_records(pc).records == [{"q": "x", "a": "multi\nline"}]
    assert read_records(pj, "json").locations == ["record 1"]


def test_pkg_paths_resolve_to_shipped_files():
    rs = read_records("pkg:assets/gsm8k_sample.jsonl")
    assert len(rs) == 8 and all(r["answer"].splitlines()[-1].startswith("#### ") for r in rs.records)


@pytest.mark.parametrize(
    "name, text, needle",
    [
        ("bad.jsonl", '{"q": "x"}\n{"q": \n', r"bad\.jsonl: line 2: invalid JSON"),
        ("list.jsonl", '["not", "an", "object"]\n', r"line 1: expected a JSON object, got list"),
        ("obj.json", '{"q": "x"}', r"expected a JSON list of objects, got dict"),
        ("items.json", '[{"q": "x"}, 5]', r"record 2: expected a JSON object, got int"),
        ("trunc.json", '[{"q": "x"},', r"trunc\.json: line 1: invalid JSON"),
        ("wide.csv", "q,a\nx,y,z\n", r"row 1: more values than header columns"),
        ("file.txt", "q", r"cannot tell the format"),
    ],
)
def test_malformed_files_name_the_place(tmp_path, name, text, needle):
    p = _write(tmp_path / name, text)
    with pytest.raises(UserError, match=needle) as e:
        read_records(p)
    assert "\n" not in str(e.value)


def test_missing_file_and_bad_encoding(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_records(tmp_path / "none.jsonl")
    p = tmp_path / "latin.jsonl"
    p.write_bytes(b'{"q": "caf\xe9"}\n')
    with pytest.raises(UserError, match="not UTF-8"):
        read_records(p)


@pytest.mark.parametrize(
    "record, needle",
    [
        ({"question": "q"}, "field 'answer': missing"),
        ({"question": "q", "answer": None}, "field 'answer': expected a string, got NoneType"),
        ({"question": "q", "answer": "   "}, "field 'answer': empty"),
        ({"question": "q", "answer": ["a"]}, "field 'answer': expected a string, got list"),
    ],
)
def test_field_checks(tmp_path, record, needle):
    p = _write(tmp_path / "d.jsonl", json.dumps({"question": "ok", "answer": "ok"}) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(UserError, match=f"d.jsonl: line 2: {needle}"):
        read_records(p).texts("answer")


def test_writers_match_the_reference_script_bytes(tmp_path):
    recs = [{"question": "café ✓", "answer": "x\ny", "n": 1}]
    write_records(tmp_path / "o.jsonl", recs)
    write_records(tmp_path / "o.json", recs)
    assert (tmp_path / "o.jsonl").read_text(encoding="utf-8") == "".join(json.dumps(r) + "\n" for r in recs)
    assert (tmp_path / "o.json").read_text(encoding="utf-8") == json.dumps(recs, ensure_ascii=False, indent=4)
    assert read_records(tmp_path / "o.json").records == recs


def test_failed_write_leaves_no_file(tmp_path):
    class Boom:
        pass

    with pytest.raises(TypeError):
        write_records(tmp_path / "o.jsonl", [{"a": "fine"}, {"b": Boom()}])
    assert list(tmp_path.iterdir()) == []


def test_hf_local_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list([{"question": "q", "answer": "a"}]).save_to_disk(str(tmp_path / "ds"))
    rs = read_records(f"hf:{tmp_path / 'ds'}")
    assert rs.records == [{"question": "q", "answer": "a"}]
    with pytest.raises(UserError, match="cannot load Hugging Face dataset"):
        read_records("hf:/definitely/not/a/dataset@train")


@pytest.mark.parametrize("kind", ["dir", "fifo"])
def test_a_record_file_that_is_a_directory_or_a_fifo_says_so(tmp_path, kind):
    import os

    path = tmp_path / "d.jsonl"
    os.mkfifo(path) if kind == "fifo" else path.mkdir()
    with pytest.raises(UserError, match=r"d\.jsonl: is a directory, not a file$" if kind == "dir" else r"d\.jsonl: is not a regular file"):
        read_records(path)


def test_writing_records_over_a_directory_is_one_line_and_leaves_nothing(tmp_path):
    target = tmp_path / "out.jsonl"
    target.mkdir()
    with pytest.raises(UserError, match=r"out\.jsonl: is a directory; give a file path to write$"):
        write_records(target, [{"a": 1}])
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"] and not any(target.iterdir())
