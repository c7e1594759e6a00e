"""Intake of GGUF files (llama.cpp's single-file format): read the header under caps, then convert once.

Plain module, no Django. A GGUF file is untrusted: its header is walked here
field by field with every count and length checked against the caps before
anything is allocated (transformers' own reader would materialize all the
metadata first), the architecture must be one transformers can load from
GGUF and generate with, and only then is the file dequantized and written as
an ordinary safetensors checkpoint (config, weights, tokenizer files, chat
template) that the rest of the platform loads like any other upload.
Refusals raise :class:`generation.checkpoints.CheckpointError`.
"""

from __future__ import annotations

import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from generation.checkpoints import CheckpointError, file_sha256

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
# Value types of the GGUF key/value section and the byte size of the fixed-size ones.
_STRING, _ARRAY = 8, 9
_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
# Metadata values this intake reads (every other value is skipped without being read).
_WANTED = {"general.architecture", "general.name", "general.alignment", "tokenizer.chat_template"}
_MAX_NESTING = 4
_MAX_DIMS = 8
# llama.cpp spells a few architectures differently from transformers' model types.
_ARCHITECTURE_ALIASES = {
    "qwen2moe": "qwen2_moe",
    "qwen3moe": "qwen3_moe",
    "gpt-oss": "gpt_oss",
    "minimax-m2": "minimax_m2",
}


@dataclass(frozen=True)
class GGUFLimits:
    max_bytes: int = 200 * 1024**3
    max_tensors: int = 10_000
    # Key/value metadata and tensor descriptions together; a 256k-token vocabulary with its merges
    # takes about 20 MiB.
    max_metadata_bytes: int = 128 * 1024 * 1024


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    tensor_count: int
    kv_count: int
    metadata_bytes: int
    architecture: str
    name: str
    chat_template: str | None


@dataclass(frozen=True)
class GGUFConversion:
    model_dir: Path
    source_sha256: str
    header: GGUFHeader


def is_gguf(path: Path) -> bool:
    """Whether ``path`` is a regular file that starts with the GGUF magic bytes."""
    if not path.is_file():
        return False
    with path.open("rb") as f:
        return f.read(4) == MAGIC


class _Walker:
    """Reads the header sequentially; every read and skip is bounded by the metadata cap and the file size."""

    def __init__(self, f: IO[bytes], *, file_size: int, cap: int, filename: str) -> None:
        self.f = f
        self.file_size = file_size
        self.cap = cap
        self.filename = filename
        self.pos = 0

    def _advance(self, n: int) -> None:
        if n < 0:
            raise CheckpointError(f"{self.filename} is not a valid GGUF file (negative length in its header).")
        self.pos += n
        if self.pos > self.file_size:
            raise CheckpointError(
                f"{self.filename} is truncated or corrupt: its header describes more data than the file holds."
            )
        if self.pos > self.cap:
            raise CheckpointError(
                f"The metadata of {self.filename} is larger than {self.cap} bytes (GGUF_MAX_METADATA_BYTES), the "
                "limit for a GGUF upload; a real model's header (vocabulary included) is far smaller, so the file "
                "was refused before it was read further."
            )

    def read(self, n: int) -> bytes:
        self._advance(n)
        data = self.f.read(n)
        if len(data) != n:
            raise CheckpointError(f"{self.filename} is truncated: it ends inside its header.")
        return data

    def skip(self, n: int) -> None:
        self._advance(n)
        self.f.seek(n, 1)

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def string(self, *, keep: bool) -> str | None:
        length = self.unpack("<Q")
        if not keep:
            self.skip(length)
            return None
        try:
            return self.read(length).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CheckpointError(f"{self.filename} has a metadata string that is not UTF-8; refused.") from exc

    def value(self, value_type: int, *, keep: bool, depth: int = 0) -> Any:
        if value_type in _SCALAR_SIZES:
            return self.unpack(_SCALAR_FORMATS[value_type])
        if value_type == _STRING:
            return self.string(keep=keep)
        if value_type == _ARRAY:
            if depth >= _MAX_NESTING:
                raise CheckpointError(f"{self.filename} nests metadata arrays more than {_MAX_NESTING} deep; refused.")
            item_type = self.unpack("<I")
            count = self.unpack("<Q")
            if item_type in _SCALAR_SIZES:
                self.skip(count * _SCALAR_SIZES[item_type])
                return None
            for _ in range(count):  # strings or arrays: each item takes at least 8 bytes, so the cap bounds this
                self.value(item_type, keep=False, depth=depth + 1)
            return None
        raise CheckpointError(f"{self.filename} has a metadata value of unknown type {value_type}; refused.")


def _tensor_bytes(ggml_type: int, dims: list[int], filename: str) -> int:
    import gguf

    try:
        block_size, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(ggml_type)]
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{filename} holds a tensor of unknown type {ggml_type}; refused.") from exc
    elements = 1
    for dim in dims:
        elements *= dim
    if elements % block_size:
        raise CheckpointError(f"{filename} holds a tensor whose size does not fit its quantization blocks; refused.")
    return elements // block_size * type_size


def read_header(path: Path, *, limits: GGUFLimits | None = None) -> GGUFHeader:
    """The header of a GGUF file, read under ``limits``: refuse before allocating what the file claims."""
    limits = limits or GGUFLimits()
    filename = path.name
    file_size = path.stat().st_size
    if file_size > limits.max_bytes:
        raise CheckpointError(
            f"{filename} is {file_size} bytes, over the {limits.max_bytes}-byte limit for a GGUF file (GGUF_MAX_BYTES)."
        )
    with path.open("rb") as f:
        walker = _Walker(f, file_size=file_size, cap=limits.max_metadata_bytes, filename=filename)
        if walker.read(4) != MAGIC:
            raise CheckpointError(f"{filename} is not a GGUF file (it does not start with the GGUF magic bytes).")
        version = walker.unpack("<I")
        if version not in SUPPORTED_VERSIONS:
            raise CheckpointError(
                f"{filename} is GGUF version {version}; only versions 2 and 3 (little-endian) are read here."
            )
        tensor_count = walker.unpack("<Q")
        kv_count = walker.unpack("<Q")
        if tensor_count > limits.max_tensors:
            raise CheckpointError(
                f"{filename} declares {tensor_count} tensors, over the limit of {limits.max_tensors} "
                "(GGUF_MAX_TENSORS); refused before reading them."
            )
        found: dict[str, Any] = {}
        for _ in range(kv_count):  # each pair takes at least 12 bytes, so the metadata cap bounds this loop
            key = walker.string(keep=True) or ""
            value_type = walker.unpack("<I")
            keep = key in _WANTED
            value = walker.value(value_type, keep=keep)
            if keep:
                found[key] = value
        descriptions: list[tuple[str, list[int], int, int]] = []
        for _ in range(tensor_count):
            name = walker.string(keep=True) or ""
            n_dims = walker.unpack("<I")
            if n_dims > _MAX_DIMS:
                raise CheckpointError(f"{filename} has a tensor with {n_dims} dimensions; refused.")
            dims = [walker.unpack("<Q") for _ in range(n_dims)]
            ggml_type = walker.unpack("<I")
            offset = walker.unpack("<Q")
            descriptions.append((name, dims, ggml_type, offset))
        metadata_bytes = walker.pos
    alignment = found.get("general.alignment") or DEFAULT_ALIGNMENT
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise CheckpointError(f"{filename} declares an invalid data alignment ({alignment!r}); refused.")
    data_start = -(-metadata_bytes // alignment) * alignment
    for name, dims, ggml_type, offset in descriptions:
        if data_start + offset + _tensor_bytes(ggml_type, dims, filename) > file_size:
            raise CheckpointError(
                f"{filename} is truncated or corrupt: the tensor {name[:100]!r} lies beyond the end of the file."
            )
    architecture = found.get("general.architecture")
    if not isinstance(architecture, str) or not architecture:
        raise CheckpointError(f"{filename} does not name its architecture (general.architecture); refused.")
    template = found.get("tokenizer.chat_template")
    return GGUFHeader(
        version=version,
        tensor_count=tensor_count,
        kv_count=kv_count,
        metadata_bytes=metadata_bytes,
        architecture=architecture,
        name=str(found.get("general.name") or ""),
        chat_template=template if isinstance(template, str) else None,
    )


def check_architecture(header: GGUFHeader, *, filename: str) -> None:
    """Refuse architectures transformers cannot load from GGUF (the supported list comes from transformers)."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    supported = sorted(a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer"))
    architecture = _ARCHITECTURE_ALIASES.get(header.architecture, header.architecture)
    if architecture not in supported:
        raise CheckpointError(
            f"{filename} holds a {header.architecture!r} model, an architecture this version of transformers cannot "
            f"load from GGUF (it can: {', '.join(supported)}). Convert the original model to a safetensors Hugging "
            "Face directory instead and upload that."
        )


def _convert(path: Path, out_dir: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    folder, name = str(path.parent), path.name
    try:
        config = AutoConfig.from_pretrained(folder, gguf_file=name, local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # transformers raises many types for a config it cannot build
        raise CheckpointError(
            f"transformers could not read the model configuration of {name} ({str(exc).splitlines()[0][:200]})."
        ) from exc
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise CheckpointError(
            f"{name} holds a {config.model_type!r} model, which is not a causal language model transformers can "
            "generate with (AutoModelForCausalLM does not support it)."
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    except Exception as exc:  # many tokenizer builders, many error types
        raise CheckpointError(
            f"transformers could not build the tokenizer stored in {name} ({str(exc).splitlines()[0][:200]})."
        ) from exc
    # save_pretrained refuses a model loaded from GGUF (it counts as quantized): build the model from its
    # config and give it the dequantized weights instead.
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tensors = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model)["tensors"]
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    missing = [key for key in missing if key not in tied]
    if missing or unexpected:
        listed = ", ".join((missing or unexpected)[:5])
        raise CheckpointError(
            f"The tensors of {name} do not match its declared {config.model_type!r} architecture "
            f"({'missing' if missing else 'unexpected'}: {listed}); the file is corrupt or mislabelled."
        )
    model.tie_weights()
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def convert_gguf(path: Path, out_dir: Path, *, limits: GGUFLimits | None = None) -> GGUFConversion:
    """Check ``path`` and write it to the new folder ``out_dir`` as a safetensors checkpoint; removed on refusal."""
    header = read_header(path, limits=limits)
    check_architecture(header, filename=path.name)
    source_sha256 = file_sha256(path)
    out_dir.mkdir(parents=True, exist_ok=False)
    try:
        _convert(path, out_dir)
    except CheckpointError:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    except Exception as exc:  # a file that passes the header checks can still fail deep in dequantization
        shutil.rmtree(out_dir, ignore_errors=True)
        raise CheckpointError(
            f"{path.name} could not be converted to safetensors ({type(exc).__name__}: {str(exc)[:200]}); the file "
            "is corrupt or uses a quantization this version of the gguf package cannot read."
        ) from exc
    except BaseException:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return GGUFConversion(model_dir=out_dir, source_sha256=source_sha256, header=header)
