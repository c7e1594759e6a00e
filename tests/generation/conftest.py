"""Fixtures of the generation tests: tiny checkpoints (built once per session), an eval set, a media root."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.generation.tiny_models import CHAT_TEMPLATE, EVAL_SET_PATH, build_checkpoint, build_gguf, pack_tar, pack_zip

BUILT = ("llama", "gpt2", "gpt_neox")


@pytest.fixture(scope="session")
def checkpoint_store(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("checkpoints")


@pytest.fixture(scope="session")
def tiny_checkpoint(checkpoint_store):
    """``tiny_checkpoint("llama")`` → a model directory, built on first use and kept for the session."""
    built: dict[tuple[str, bool], Path] = {}

    def get(architecture: str, *, always_eos: bool = False) -> Path:
        key = (architecture, always_eos)
        if key not in built:
            name = f"{architecture}-eos" if always_eos else architecture
            built[key] = build_checkpoint(architecture, checkpoint_store / name, always_eos=always_eos)
        return built[key]

    return get


@pytest.fixture(scope="session")
def tiny_archive(tiny_checkpoint, checkpoint_store):
    """``tiny_archive("gpt2", ".zip")`` → the checkpoint packed as .zip, .tar or .tar.gz (in a top folder)."""
    packed: dict[tuple[str, str], Path] = {}

    def get(architecture: str, suffix: str = ".zip") -> Path:
        key = (architecture, suffix)
        if key not in packed:
            model_dir = tiny_checkpoint(architecture)
            archive = checkpoint_store / f"{architecture}{suffix}"
            if suffix == ".zip":
                pack_zip(model_dir, archive, folder=architecture)
            else:
                pack_tar(model_dir, archive, folder=architecture)
            packed[key] = archive
        return packed[key]

    return get


@pytest.fixture(scope="session")
def tiny_gguf(tiny_checkpoint, checkpoint_store):
    """``tiny_gguf(name, chat_template=..., architecture=...)`` → a GGUF file carrying the tiny llama's weights."""

    def get(name: str = "tiny", *, chat_template: str | None = CHAT_TEMPLATE, architecture: str = "llama") -> Path:
        path = checkpoint_store / "gguf" / f"{name}.gguf"
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            build_gguf(
                path, source_dir=tiny_checkpoint("llama"), chat_template=chat_template, architecture=architecture
            )
        return path

    return get


@pytest.fixture
def media_root(settings, tmp_path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    return root


@pytest.fixture
def eval_set(db):
    """The real 252-prompt Self-Instruct user-oriented set."""
    from generation.imports import evalset_import
    from generation.models import EvalSet

    evalset_import(path=EVAL_SET_PATH, name="self-instruct")
    return EvalSet.objects.get(name="self-instruct")


@pytest.fixture
def ready_model(db, media_root, tiny_checkpoint):
    """``ready_model("llama", name=..., **settings)`` → a validated ModelEntry using the directory in place."""
    from generation import services

    def make(architecture: str = "llama", *, name: str | None = None, always_eos: bool = False, **fields):
        model = services.model_add(
            name=name or architecture, source=str(tiny_checkpoint(architecture, always_eos=always_eos)), **fields
        )
        model = services.checkpoint_validate(model_id=model.pk)
        assert model.status == model.Status.READY, model.status_reason
        return model

    return make
