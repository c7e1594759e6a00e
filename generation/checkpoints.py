"""Safe intake of uploaded checkpoints: extract archives defensively, then inspect the model directory.

Plain module, no Django. Archives (.zip, .tar, .tar.gz) are untrusted: member
names, types, counts, sizes and compression ratios are checked from the
headers before a byte is written, and again while streaming (headers can lie),
and everything lands under one destination folder that is removed on refusal.
Weights are accepted only as safetensors; pickle files are refused and never
opened. Each refusal raises :class:`CheckpointError` with a one-paragraph
message meant for the admin.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import struct
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "tiktoken.model")
_COPY_BLOCK = 1024 * 1024
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024


class CheckpointError(ValueError):
    """A checkpoint was refused; the message says why and what to do."""


@dataclass(frozen=True)
class Limits:
    max_files: int = 10_000
    max_total_bytes: int = 200 * 1024**3
    # Uncompressed / compressed. Safetensors weights barely compress (~1.1x),
    # tokenizer JSON about 4x; 100x is only reached by padding or a bomb.
    max_ratio: float = 100.0
    # Small archives (a config and a tokenizer) may compress well; ratios are
    # only judged past this many uncompressed bytes.
    ratio_floor_bytes: int = 16 * 1024 * 1024


@dataclass(frozen=True)
class CheckpointInfo:
    model_dir: Path
    architecture: str
    parameter_count: int
    weights_sha256: str
    chat_template_sha256: str = ""


def archive_kind(path: Path) -> str:
    """``zip``, ``tar``, ``gguf`` or ``directory``, judged from the content, not only the name."""
    if path.is_dir():
        return "directory"
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist or is not a regular file or directory.")
    with path.open("rb") as f:
        if f.read(4) == b"GGUF":
            return "gguf"
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except (OSError, tarfile.TarError):
        pass
    raise CheckpointError(
        f"{path.name} is not a checkpoint archive: upload a .zip, .tar or .tar.gz of a Hugging Face model "
        "directory (config.json, tokenizer files, *.safetensors weights) or a .gguf file, or give a server-side "
        "directory."
    )


def _safe_member_path(name: str) -> PurePosixPath:
    """The relative path a member may be written to; refuse absolute paths and ``..``."""
    if "\x00" in name:
        raise CheckpointError(f"The archive member {name!r} has a NUL byte in its name; refused.")
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or (len(normalized) > 1 and normalized[1] == ":"):
        raise CheckpointError(
            f"The archive member {name!r} has an absolute path; a checkpoint archive may only hold relative "
            "paths inside the model directory. Refused, nothing was extracted."
        )
    parts = [p for p in PurePosixPath(normalized).parts if p not in ("", ".")]
    if ".." in parts:
        raise CheckpointError(
            f"The archive member {name!r} climbs out of the extraction folder with '..' (path traversal); "
            "refused, nothing was extracted."
        )
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def _link_error(name: str) -> CheckpointError:
    return CheckpointError(
        f"The archive member {name!r} is a link (symlink or hard link); checkpoint archives may only hold "
        "regular files and folders. Re-create the archive without links (e.g. `tar --dereference`)."
    )


class _Budget:
    """Counts files and bytes actually written, whatever the headers claimed."""

    def __init__(self, limits: Limits, archive_bytes: int) -> None:
        self.limits = limits
        self.archive_bytes = max(archive_bytes, 1)
        self.files = 0
        self.declared = 0
        self.written = 0

    def _check_ratio(self, total: int) -> None:
        if total > self.limits.ratio_floor_bytes and total / self.archive_bytes > self.limits.max_ratio:
            raise CheckpointError(
                f"The archive expands to more than {self.limits.max_ratio:g} times its size "
                f"({self.archive_bytes} bytes compressed, over {total} bytes uncompressed): this looks like a "
                "zip bomb and was refused before it could fill the disk."
            )

    def _check_total(self, total: int) -> None:
        if total > self.limits.max_total_bytes:
            raise CheckpointError(
                f"The archive holds more than {self.limits.max_total_bytes} bytes uncompressed, the limit for "
                "a checkpoint upload; put big checkpoints on a shared volume and give the server-side directory."
            )

    def declare(self, name: str, size: int) -> None:
        self.files += 1
        if self.files > self.limits.max_files:
            raise CheckpointError(
                f"The archive has more than {self.limits.max_files} files, the limit for a checkpoint upload."
            )
        self.declared += max(size, 0)
        self._check_total(self.declared)
        self._check_ratio(self.declared)

    def check_member_ratio(self, name: str, size: int, compressed: int) -> None:
        if size > self.limits.ratio_floor_bytes and size / max(compressed, 1) > self.limits.max_ratio:
            raise CheckpointError(
                f"The archive member {name!r} expands {size / max(compressed, 1):.0f} times ({compressed} bytes "
                f"compressed to {size}), over the limit of {self.limits.max_ratio:g}: this looks like a zip bomb "
                "and was refused before anything was extracted."
            )

    def add(self, n: int) -> None:
        self.written += n
        self._check_total(self.written)
        self._check_ratio(self.written)


def _write_stream(source: IO[bytes], target: Path, declared: int, budget: _Budget, name: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(target, flags, 0o644)
    written = 0
    with os.fdopen(fd, "wb") as out:
        while True:
            block = source.read(_COPY_BLOCK)
            if not block:
                break
            written += len(block)
            if written > declared:
                raise CheckpointError(
                    f"The archive member {name!r} holds more data than its header declares; the archive is "
                    "corrupt or hostile and was refused."
                )
            budget.add(len(block))
            out.write(block)


def _target(dest: Path, relative: PurePosixPath) -> Path:
    target = dest.joinpath(*relative.parts)
    # Belt and braces after the name checks: the resolved path stays inside dest.
    if not target.resolve().is_relative_to(dest.resolve()):
        raise CheckpointError(f"The archive member {str(relative)!r} would be written outside the model folder.")
    return target


def _extract_zip(archive: Path, dest: Path, limits: Limits) -> None:
    budget = _Budget(limits, archive.stat().st_size)
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        # First pass, headers only: refuse before writing anything.
        for info in members:
            _safe_member_path(info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise _link_error(info.filename)
            # Many zip writers leave the file-type bits empty; only a stated special type is refused.
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise CheckpointError(f"The archive member {info.filename!r} is not a regular file; refused.")
            if info.is_dir():
                continue
            budget.declare(info.filename, info.file_size)
            budget.check_member_ratio(info.filename, info.file_size, info.compress_size)
        budget.files = 0
        budget.declared = 0
        for info in members:
            relative = _safe_member_path(info.filename)
            target = _target(dest, relative)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            with zf.open(info) as source:
                _write_stream(source, target, info.file_size, budget, info.filename)


def _extract_tar(archive: Path, dest: Path, limits: Limits) -> None:
    budget = _Budget(limits, archive.stat().st_size)
    # Stream mode: one pass, each header checked before its data is read.
    with tarfile.open(archive, mode="r|*") as tf:
        for member in tf:
            relative = _safe_member_path(member.name)
            if member.issym() or member.islnk():
                raise _link_error(member.name)
            if member.isdir():
                _target(dest, relative).mkdir(parents=True, exist_ok=True)
                continue
            if not member.isreg():
                raise CheckpointError(
                    f"The archive member {member.name!r} is a device, FIFO or other special file; refused."
                )
            budget.declare(member.name, member.size)
            source = tf.extractfile(member)
            if source is None:
                raise CheckpointError(f"The archive member {member.name!r} cannot be read.")
            _write_stream(source, _target(dest, relative), member.size, budget, member.name)


def extract_archive(archive: Path, dest: Path, *, limits: Limits | None = None) -> Path:
    """Extract ``archive`` into the new folder ``dest``; on any refusal ``dest`` is removed.

    Returns the model directory (``dest`` or its single top-level folder).
    """
    limits = limits or Limits()
    kind = archive_kind(archive)
    if kind == "directory":
        raise CheckpointError(f"{archive} is a directory, not an archive.")
    dest.mkdir(parents=True, exist_ok=False)
    try:
        if kind == "zip":
            _extract_zip(archive, dest, limits)
        else:
            _extract_tar(archive, dest, limits)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise CheckpointError(
            f"The archive {archive.name} is corrupt or truncated and could not be read ({exc})."
        ) from exc
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return find_model_dir(dest)


def find_model_dir(root: Path) -> Path:
    """The folder holding config.json: ``root`` itself or its single top-level folder."""
    if (root / "config.json").is_file():
        return root
    children = [p for p in root.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    if len(children) == 1 and children[0].is_dir() and (children[0] / "config.json").is_file():
        return children[0]
    raise CheckpointError(
        "No config.json found at the top of the checkpoint (or in its single top-level folder); a checkpoint is "
        "a Hugging Face model directory as written by save_pretrained()."
    )


def _refuse_pickles(model_dir: Path) -> None:
    pickles = sorted(
        str(p.relative_to(model_dir))
        for p in model_dir.rglob("*")
        if p.is_file() and p.name.lower().endswith(PICKLE_SUFFIXES)
    )
    if pickles:
        listed = ", ".join(pickles[:5]) + (" ..." if len(pickles) > 5 else "")
        raise CheckpointError(
            f"The checkpoint contains pickle files ({listed}). Pickle can run arbitrary code when loaded, so it is "
            "never opened here. Convert the weights to safetensors in a trusted environment: load the model with "
            "AutoModelForCausalLM.from_pretrained(path) and save it with "
            "model.save_pretrained(out_dir, safe_serialization=True), then upload out_dir without the pickle files."
        )


def _safetensors_parameters(path: Path) -> int:
    """Parameters counted from the safetensors header only (the JSON before the tensor data)."""
    with path.open("rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise CheckpointError(f"{path.name} is not a safetensors file (too short).")
        (length,) = struct.unpack("<Q", raw)
        if length > _MAX_SAFETENSORS_HEADER or length > path.stat().st_size:
            raise CheckpointError(f"{path.name} is not a valid safetensors file (bad header length).")
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path.name} is not a valid safetensors file (unreadable header).") from exc
    total = 0
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        count = 1
        for dim in spec.get("shape", []):
            count *= int(dim)
        total += count
    return total


def _weight_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CheckpointError("model.safetensors.index.json is not a valid safetensors index.") from exc
        names = sorted(set(weight_map.values()))
        files = []
        for name in names:
            if "/" in name or "\\" in name or name in ("..", "."):
                raise CheckpointError(f"The safetensors index points outside the model folder ({name!r}).")
            shard = model_dir / name
            if not shard.is_file():
                raise CheckpointError(f"The safetensors index lists the shard {name}, which is missing.")
            files.append(shard)
        return files
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise CheckpointError(
            "The checkpoint has no weights: expected model.safetensors or sharded *.safetensors with "
            "model.safetensors.index.json (save with save_pretrained(..., safe_serialization=True))."
        )
    return files


def file_sha256(path: Path) -> str:
    """sha256 of one file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_COPY_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _sha256(files: list[Path], model_dir: Path) -> str:
    """sha256 of a single weights file; for shards, of the list of (name, shard sha256)."""
    digests = [(path.name, file_sha256(path)) for path in files]
    if len(digests) == 1:
        return digests[0][1]
    combined = hashlib.sha256()
    for name, digest in digests:
        combined.update(f"{name}:{digest}\n".encode())
    return combined.hexdigest()


def inspect_checkpoint(model_dir: Path) -> CheckpointInfo:
    """Check that ``model_dir`` is a safetensors causal LM transformers knows, with a loadable tokenizer.

    A chat template, when the tokenizer has one, must pass :func:`generation.chat_templates.chat_template_check`.
    """
    from transformers import AutoConfig, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_dir = find_model_dir(model_dir)
    _refuse_pickles(model_dir)
    try:
        raw_config = json.loads((model_dir / "config.json").read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"config.json is not valid JSON ({exc}).") from exc
    model_type = raw_config.get("model_type") if isinstance(raw_config, dict) else None
    if not model_type:
        raise CheckpointError("config.json has no model_type, so the architecture cannot be recognised.")
    try:
        config = AutoConfig.from_pretrained(str(model_dir), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # transformers raises ValueError/KeyError/OSError for unknown or broken configs
        raise CheckpointError(
            f"config.json could not be loaded: model_type {model_type!r} is not an architecture this version of "
            f"transformers knows, or the file is malformed ({str(exc).splitlines()[0][:200]}). Custom code "
            "(trust_remote_code) is never run."
        ) from exc
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise CheckpointError(
            f"model_type {config.model_type!r} is not a causal language model transformers can generate with "
            "(AutoModelForCausalLM does not support it)."
        )
    files = _weight_files(model_dir)
    parameters = sum(_safetensors_parameters(p) for p in files)
    if not any((model_dir / name).is_file() for name in TOKENIZER_FILES):
        raise CheckpointError(
            "The checkpoint has no tokenizer (none of tokenizer.json, tokenizer.model, vocab.json): save the "
            "tokenizer into the same directory with tokenizer.save_pretrained(model_dir)."
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # many tokenizer classes, many error types
        raise CheckpointError(f"The tokenizer could not be loaded ({str(exc).splitlines()[0][:200]}).") from exc
    from generation.chat_templates import chat_template_check

    template_sha256 = chat_template_check(tokenizer) or ""
    architectures = getattr(config, "architectures", None) or [MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[config.model_type]]
    return CheckpointInfo(
        model_dir=model_dir,
        architecture=str(architectures[0]),
        parameter_count=parameters,
        weights_sha256=_sha256(files, model_dir),
        chat_template_sha256=template_sha256,
    )
