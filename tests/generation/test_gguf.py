"""GGUF intake: a .gguf file is checked under caps, converted once to safetensors and then runs like any checkpoint.

The GGUF files are written here with the ``gguf`` package from the tiny LLaMA
of tiny_models.py, so a conversion can be compared with the original weights.
"""

from __future__ import annotations

import hashlib
import struct
import time
from io import StringIO
from pathlib import Path

import pytest
import torch
from django.core.management import CommandError, call_command
from django.urls import reverse

from generation import generator, tasks
from generation.checkpoints import CheckpointError
from generation.gguf_intake import GGUFLimits, read_header
from generation.models import ModelEntry
from generation.prompting import format_chat
from tests.generation.tiny_models import CHAT_TEMPLATE

ESCAPE = "{{ ''.__class__.__mro__[1].__subclasses__() }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
NEVER_ENDS = (
    "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}"
    "{% for m in messages %}{{ m['content'] }}{% endfor %}"
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def add_model(*args: object) -> str:
    out = StringIO()
    call_command("add_model", *[str(a) for a in args], stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_add_model_converts_a_gguf_file_once_and_runs_it_like_the_original(media_root, tiny_gguf, tiny_checkpoint):
    gguf_file = tiny_gguf()
    output = add_model("tiny-gguf", "--checkpoint", gguf_file, "--template", "chat", "--max-new-tokens", 6)
    assert "is ready" in output
    model = ModelEntry.objects.get(name="tiny-gguf")
    folder = Path(model.checkpoint_dir)
    assert folder.is_relative_to(media_root / "checkpoints" / str(model.pk))
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    assert model.architecture == "LlamaForCausalLM"
    # Both fingerprints: the file the admin gave, and the weights that actually run.
    assert model.source_sha256 == sha256(gguf_file)
    assert model.weights_sha256 == sha256(folder / "model.safetensors")
    assert model.chat_template_sha256 == hashlib.sha256(CHAT_TEMPLATE.encode()).hexdigest()
    assert gguf_file.exists()  # a server-side file is the admin's: left in place

    converted = generator.load_model(folder)
    original = generator.load_model(tiny_checkpoint("llama"))
    ids = original.tokenizer("Write a haiku about the sea.", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        assert torch.allclose(converted.model(ids).logits, original.model(ids).logits, atol=1e-5)
    # The chat template travelled with the tokenizer, and prompts come out the same.
    assert format_chat("Name a colour.", tokenizer=converted.tokenizer) == format_chat(
        "Name a colour.", tokenizer=original.tokenizer
    )


@pytest.mark.django_db
def test_a_gguf_uploaded_in_the_admin_is_converted_and_the_upload_dropped(admin_client, media_root, tiny_gguf):
    settings = {"template": "chat", "max_new_tokens": 4, "temperature": 0, "top_p": 1, "seed": 0, "dtype": "auto"}
    with tiny_gguf().open("rb") as f:
        response = admin_client.post(
            reverse("admin:generation_modelentry_add"), {"name": "uploaded-gguf", "checkpoint_file": f, **settings}
        )
    assert response.status_code == 302
    model = ModelEntry.objects.get(name="uploaded-gguf")
    upload = Path(model.source)
    assert upload.name == "tiny.gguf" and upload.exists()
    tasks.validate_checkpoint(model.pk)
    model.refresh_from_db()
    assert model.status == ModelEntry.Status.READY, model.status_reason
    assert model.source_sha256 == sha256(tiny_gguf())
    assert not upload.exists()  # the converted copy is what runs
    page = admin_client.get(reverse("admin:generation_modelentry_change", args=[model.pk])).content.decode()
    assert model.source_sha256 in page and model.weights_sha256 in page


def refused(*args: object) -> str:
    with pytest.raises(CommandError) as error:
        add_model(*args)
    return str(error.value)


@pytest.mark.django_db
def test_an_architecture_transformers_cannot_load_from_gguf_is_refused(media_root, tiny_gguf):
    message = refused("rwkv", "--checkpoint", tiny_gguf("rwkv", architecture="rwkv6"))
    assert "'rwkv6' model, an architecture this version of transformers cannot load from GGUF" in message
    assert "llama" in message  # the message lists what works
    assert not ModelEntry.objects.exists()
    assert not list(media_root.glob("checkpoints/*/*"))  # nothing half-written


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("setting", "value", "words"),
    [
        ("GGUF_MAX_BYTES", 1000, "over the 1000-byte limit for a GGUF file"),
        ("GGUF_MAX_TENSORS", 5, "over the limit of 5 (GGUF_MAX_TENSORS)"),
        ("GGUF_MAX_METADATA_BYTES", 4096, "larger than 4096 bytes (GGUF_MAX_METADATA_BYTES)"),
    ],
)
def test_gguf_caps_refuse_a_file_from_its_header(settings, media_root, tiny_gguf, setting, value, words):
    setattr(settings, setting, value)
    message = refused("capped", "--checkpoint", tiny_gguf())
    assert words in message
    assert not ModelEntry.objects.exists()


def hostile_header(tmp_path: Path) -> Path:
    """A 60-byte file claiming a metadata array of 2**62 strings."""
    path = tmp_path / "bomb.gguf"
    key = b"tokenizer.ggml.tokens"
    path.write_bytes(
        b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key)) + key + struct.pack("<IIQ", 9, 8, 2**62)
    )
    return path


def test_a_header_that_claims_more_than_the_file_holds_is_refused_at_once(tmp_path):
    started = time.monotonic()
    with pytest.raises(CheckpointError, match="truncated"):
        read_header(hostile_header(tmp_path), limits=GGUFLimits())
    assert time.monotonic() - started < 1


def test_a_truncated_gguf_file_is_refused(tmp_path, tiny_gguf):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf().read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="lies beyond the end of the file"):
        read_header(cut)


@pytest.mark.django_db
def test_a_chat_template_that_reaches_for_python_internals_is_refused(media_root, tiny_gguf):
    message = refused("escape", "--checkpoint", tiny_gguf("escape", chat_template=ESCAPE), "--template", "chat")
    assert "SecurityError" in message and "__class__" in message
    assert not ModelEntry.objects.exists()


@pytest.mark.django_db
def test_a_chat_template_that_never_ends_is_refused_within_seconds(media_root, tiny_gguf):
    path = tiny_gguf("loop", chat_template=NEVER_ENDS)
    started = time.monotonic()
    message = refused("loop", "--checkpoint", path, "--template", "chat")
    assert "did not finish rendering" in message
    assert time.monotonic() - started < 60  # the probe is killed after 5 s; the rest is loading the model


def test_rendering_a_hostile_template_at_run_time_goes_through_the_sandbox(tiny_checkpoint):
    tokenizer = generator.load_model(tiny_checkpoint("llama")).tokenizer
    tokenizer.chat_template = "{{ cycler.__init__.__globals__.os.system('touch /tmp/blindeval-pwned') }}"
    from jinja2.exceptions import SecurityError

    with pytest.raises(SecurityError):
        format_chat("hi", tokenizer=tokenizer)
    assert not Path("/tmp/blindeval-pwned").exists()


@pytest.mark.django_db
def test_an_interrupted_conversion_leaves_no_stuck_entry_and_can_be_run_again(media_root, tiny_gguf, monkeypatch):
    from generation import services

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C (or the demo stopping) in the middle of the conversion

    monkeypatch.setattr(services, "convert_gguf", interrupted)
    with pytest.raises(KeyboardInterrupt):
        services.model_take_in(name="again", source=str(tiny_gguf()), template="chat")
    entry = ModelEntry.objects.get(name="again")
    assert entry.status == ModelEntry.Status.INVALID and "interrupted" in entry.status_reason
    assert not (media_root / "checkpoints" / str(entry.pk)).exists()
    monkeypatch.undo()
    assert "is ready" in add_model("again", "--checkpoint", tiny_gguf(), "--template", "chat")
