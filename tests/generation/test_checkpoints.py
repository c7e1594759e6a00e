"""Checkpoint intake: good archives of several architectures become ready; hostile ones are refused.

Each refusal ends the model entry as invalid with its own message, and
nothing is written anywhere outside the model's upload area (which is removed).
"""

from __future__ import annotations

import io
import json
import pickle
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from generation import services
from generation.checkpoints import CheckpointError, Limits, extract_archive
from generation.errors import InputError
from generation.models import ModelEntry

pytestmark = pytest.mark.django_db


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def intake(path: Path, name: str = "candidate") -> ModelEntry:
    model = services.model_add(name=name, source=str(path))
    return services.checkpoint_validate(model_id=model.pk)


# ------------------------------------------------------------------ accepted


@pytest.mark.parametrize("architecture", ["llama", "gpt2", "gpt_neox"])
@pytest.mark.parametrize("suffix", [".zip", ".tar.gz", ".tar"])
def test_archives_of_three_architectures_become_ready(media_root, tiny_archive, architecture, suffix):
    archive = tiny_archive(architecture, suffix)
    model = intake(archive)
    assert model.status == ModelEntry.Status.READY, model.status_reason
    assert model.architecture.lower().startswith(architecture.replace("_", "")[:4])
    assert model.parameter_count > 10_000
    assert len(model.weights_sha256) == 64
    model_dir = Path(model.checkpoint_dir)
    assert model_dir.is_relative_to(media_root / "checkpoints" / str(model.pk))
    assert (model_dir / "config.json").is_file()
    assert archive.exists()  # a server-side archive given on the command line is left alone


@pytest.mark.parametrize("architecture", ["qwen2", "opt"])
def test_an_architecture_the_other_tests_never_built_is_accepted(media_root, tiny_checkpoint, tmp_path, architecture):
    from tests.generation.tiny_models import pack_zip

    archive = pack_zip(tiny_checkpoint(architecture), tmp_path / f"{architecture}.zip")
    model = intake(archive)
    assert model.status == ModelEntry.Status.READY, model.status_reason
    assert model.architecture in ("Qwen2ForCausalLM", "OPTForCausalLM")


def test_a_server_side_directory_is_used_in_place(media_root, tiny_checkpoint):
    model = intake(tiny_checkpoint("gpt2"))
    assert model.status == ModelEntry.Status.READY
    assert model.checkpoint_dir == str(tiny_checkpoint("gpt2"))
    assert not (media_root / "checkpoints").exists()


def test_sharded_safetensors_with_an_index_are_accepted(media_root, tmp_path):
    from transformers import AutoModelForCausalLM

    from tests.generation.tiny_models import build_checkpoint

    source = build_checkpoint("llama", tmp_path / "single")
    sharded = tmp_path / "sharded"
    model = AutoModelForCausalLM.from_pretrained(source, use_safetensors=True)
    model.save_pretrained(sharded, safe_serialization=True, max_shard_size="20KB")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (source / name).exists():
            shutil.copy(source / name, sharded / name)
    assert (sharded / "model.safetensors.index.json").exists()
    entry = intake(sharded)
    assert entry.status == ModelEntry.Status.READY, entry.status_reason
    assert entry.parameter_count == sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------ refused


@pytest.fixture
def arena(tmp_path, media_root):
    """A folder holding the media root and the hostile archives; nothing new may appear in it but the archive."""
    return tmp_path


def refused(archive: Path, arena: Path, media_root: Path, match: str) -> ModelEntry:
    before = snapshot(arena)
    model = intake(archive)
    assert model.status == ModelEntry.Status.INVALID
    assert model.checkpoint_dir == ""
    import re

    assert re.search(match, model.status_reason), model.status_reason
    # MEDIA_ROOT/checkpoints/ is the parent of every model's area; it may stay, empty.
    assert snapshot(arena) - {"media/checkpoints"} == before, "something was written outside the upload area"
    assert not (media_root / "checkpoints" / str(model.pk)).exists()
    return model


def zip_with(path: Path, good_dir: Path | None, extra: dict[str, bytes], *, symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        if good_dir is not None:
            for file in sorted(good_dir.iterdir()):
                zf.write(file, file.name)
        for name, data in extra.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo("evil-link")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, symlink)
    return path


def tar_with(path: Path, good_dir: Path | None, members: list[tarfile.TarInfo], data: bytes = b"") -> Path:
    with tarfile.open(path, "w:gz") as tf:
        if good_dir is not None:
            for file in sorted(good_dir.iterdir()):
                tf.add(file, arcname=file.name)
        for info in members:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def test_path_traversal_in_a_zip_is_refused(arena, media_root, tiny_checkpoint):
    archive = zip_with(arena / "traversal.zip", tiny_checkpoint("gpt2"), {"../../escaped.txt": b"pwned"})
    refused(archive, arena, media_root, r"climbs out .*'\.\.' \(path traversal\)")


def test_path_traversal_in_a_tar_is_refused(arena, media_root, tiny_checkpoint):
    info = tarfile.TarInfo("model/../../../escaped.txt")
    info.size = 5
    archive = tar_with(arena / "traversal.tar.gz", tiny_checkpoint("gpt2"), [info], b"pwned")
    refused(archive, arena, media_root, r"path traversal")


def test_an_absolute_path_is_refused(arena, media_root, tiny_checkpoint):
    info = tarfile.TarInfo(str(arena / "absolute-escape.txt"))
    info.size = 5
    archive = tar_with(arena / "absolute.tar.gz", tiny_checkpoint("gpt2"), [info], b"pwned")
    refused(archive, arena, media_root, r"has an absolute path")


def test_a_symlink_in_a_tar_is_refused(arena, media_root, tiny_checkpoint):
    info = tarfile.TarInfo("tokenizer_link.json")
    info.type = tarfile.SYMTYPE
    info.linkname = "/etc/passwd"
    archive = tar_with(arena / "symlink.tar.gz", tiny_checkpoint("gpt2"), [info])
    refused(archive, arena, media_root, r"is a link \(symlink or hard link\)")


def test_a_symlink_in_a_zip_is_refused(arena, media_root, tiny_checkpoint):
    archive = zip_with(arena / "symlink.zip", tiny_checkpoint("gpt2"), {}, symlink="/etc/passwd")
    refused(archive, arena, media_root, r"'evil-link' is a link")


def test_a_hard_link_in_a_tar_is_refused(arena, media_root, tiny_checkpoint):
    info = tarfile.TarInfo("hard")
    info.type = tarfile.LNKTYPE
    info.linkname = "config.json"
    archive = tar_with(arena / "hardlink.tar.gz", tiny_checkpoint("gpt2"), [info])
    refused(archive, arena, media_root, r"is a link")


def test_a_device_file_in_a_tar_is_refused(arena, media_root, tiny_checkpoint):
    info = tarfile.TarInfo("null-device")
    info.type = tarfile.CHRTYPE
    info.devmajor, info.devminor = 1, 3
    archive = tar_with(arena / "device.tar.gz", tiny_checkpoint("gpt2"), [info])
    refused(archive, arena, media_root, r"device, FIFO or other special file")


def _zeros_zip(path: Path, megabytes: int) -> Path:
    block = bytes(1024 * 1024)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("model.safetensors", "w", force_zip64=True) as member:
            for _ in range(megabytes):
                member.write(block)  # streamed: the 200 MB never sit in memory
        zf.writestr("config.json", json.dumps({"model_type": "gpt2"}))
    return path


def test_a_zip_bomb_is_refused_before_anything_is_extracted(arena, media_root):
    archive = _zeros_zip(arena / "bomb.zip", 200)
    assert archive.stat().st_size < 2 * 1024 * 1024
    model = refused(archive, arena, media_root, r"zip bomb and was refused before")
    assert "204" in model.status_reason or "bytes compressed" in model.status_reason


def test_a_gzip_tar_bomb_is_refused_while_streaming(arena, media_root):
    archive = arena / "bomb.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("model.safetensors")
        info.size = 200 * 1024 * 1024

        class Zeros(io.RawIOBase):
            def __init__(self, n: int) -> None:
                self.left = n

            def readable(self) -> bool:
                return True

            def readinto(self, buffer) -> int:
                n = min(len(buffer), self.left)
                buffer[:n] = bytes(n)
                self.left -= n
                return n

        tf.addfile(info, io.BufferedReader(Zeros(info.size)))
    refused(archive, arena, media_root, r"more than 100 times its size .* zip bomb")


def test_the_total_size_cap_is_enforced(arena, media_root, settings, tiny_archive):
    settings.CHECKPOINT_MAX_BYTES = 10_000
    shutil.copy(tiny_archive("gpt2", ".zip"), arena / "big.zip")
    refused(arena / "big.zip", arena, media_root, r"more than 10000 bytes uncompressed")


def test_the_file_count_cap_is_enforced(arena, media_root, settings, tiny_checkpoint):
    settings.CHECKPOINT_MAX_FILES = 5
    archive = zip_with(arena / "many.zip", tiny_checkpoint("gpt2"), {f"extra/{i}.txt": b"x" for i in range(10)})
    refused(archive, arena, media_root, r"more than 5 files")


class _Canary:
    """Unpickling this would create a file: proof that the pickle was never loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_pickle_weights_are_refused_with_how_to_convert_and_never_unpickled(arena, media_root, tiny_checkpoint):
    canary = arena / "unpickled-canary"
    model_dir = arena / "pickled"
    shutil.copytree(tiny_checkpoint("gpt2"), model_dir)
    (model_dir / "model.safetensors").unlink()
    (model_dir / "pytorch_model.bin").write_bytes(pickle.dumps(_Canary(canary)))
    archive = shutil.make_archive(str(arena / "pickled"), "zip", model_dir)
    shutil.rmtree(model_dir)
    model = refused(Path(archive), arena, media_root, r"pickle files \(pytorch_model\.bin\)")
    assert "save_pretrained(out_dir, safe_serialization=True)" in model.status_reason
    assert not canary.exists()


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".pkl", ".ckpt"])
def test_every_pickle_suffix_is_refused(arena, media_root, tiny_checkpoint, suffix):
    archive = zip_with(arena / f"pickle{suffix}.zip", tiny_checkpoint("gpt2"), {f"weights{suffix}": b"not opened"})
    refused(archive, arena, media_root, rf"pickle files \(weights\{suffix}\)")


def test_a_checkpoint_without_tokenizer_is_refused(arena, media_root, tiny_checkpoint):
    model_dir = arena / "no-tokenizer"
    model_dir.mkdir()
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        shutil.copy(tiny_checkpoint("gpt2") / name, model_dir / name)
    archive = Path(shutil.make_archive(str(arena / "no-tokenizer"), "gztar", model_dir))
    shutil.rmtree(model_dir)
    refused(archive, arena, media_root, r"has no tokenizer")


def test_an_unknown_architecture_is_refused(arena, media_root, tiny_checkpoint):
    config = json.loads((tiny_checkpoint("gpt2") / "config.json").read_text())
    config["model_type"] = "made_up_transformer"
    archive = zip_with(arena / "unknown.zip", None, {"config.json": json.dumps(config).encode()})
    refused(archive, arena, media_root, r"model_type 'made_up_transformer' is not an architecture")


def test_a_model_that_is_not_a_causal_lm_is_refused(arena, media_root):
    config = {"model_type": "t5", "d_model": 16, "num_layers": 1, "num_heads": 2, "d_kv": 8, "vocab_size": 10}
    archive = zip_with(arena / "t5.zip", None, {"config.json": json.dumps(config).encode()})
    refused(archive, arena, media_root, r"'t5' is not a causal language model")


def test_missing_weights_are_refused(arena, media_root, tiny_checkpoint):
    files = {n: (tiny_checkpoint("gpt2") / n).read_bytes() for n in ("config.json", "tokenizer.json")}
    archive = zip_with(arena / "noweights.zip", None, files)
    refused(archive, arena, media_root, r"has no weights")


def test_a_non_archive_file_is_refused_at_once(arena, media_root):
    text = arena / "notes.zip"
    text.write_text("this is not an archive")
    with pytest.raises(InputError, match=r"notes\.zip is not a checkpoint archive"):
        services.model_add(name="notes", source=str(text))
    assert not ModelEntry.objects.exists()


def test_a_non_archive_upload_is_refused_by_validation(arena, media_root, tmp_path):
    model = services.model_add(name="uploaded")
    upload = tmp_path / "upload.tmp"
    upload.write_bytes(b"\x89PNG\r\n\x1a\n not a checkpoint")
    services.model_attach_upload(model=model, upload=upload, original_name="picture.tar.gz")
    model = services.checkpoint_validate(model_id=model.pk)
    assert model.status == ModelEntry.Status.INVALID
    assert "picture.tar.gz is not a checkpoint archive" in model.status_reason
    assert not (media_root / "checkpoints" / str(model.pk)).exists()


def test_extract_archive_refuses_to_reuse_a_folder(tmp_path, tiny_archive):
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(FileExistsError):
        extract_archive(tiny_archive("gpt2", ".zip"), dest, limits=Limits())


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)
