"""The generation admin: checkpoint upload (browser and server path), runs with progress, cancel, errors."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from django.urls import reverse

from generation import tasks
from generation.models import GenerationRun, ModelEntry, Response
from tests.worker import wait_for

SETTINGS = {"template": "alpaca", "max_new_tokens": 4, "temperature": 0, "top_p": 1, "seed": 0, "dtype": "auto"}
ADD_URL = reverse("admin:generation_modelentry_add")


def upload(client, name: str, archive: Path):
    with archive.open("rb") as f:
        return client.post(ADD_URL, {"name": name, "checkpoint_file": f, **SETTINGS})


@pytest.mark.django_db
@pytest.mark.parametrize(("architecture", "suffix"), [("llama", ".zip"), ("gpt2", ".tar.gz"), ("gpt_neox", ".zip")])
def test_an_uploaded_archive_is_queued_then_validated(
    admin_client, media_root, tiny_archive, django_capture_on_commit_callbacks, architecture, suffix
):
    with django_capture_on_commit_callbacks() as queued:
        response = upload(admin_client, f"up-{architecture}", tiny_archive(architecture, suffix))
    assert response.status_code == 302
    model = ModelEntry.objects.get(name=f"up-{architecture}")
    assert model.status == ModelEntry.Status.PENDING
    assert Path(model.source).is_relative_to(media_root / "checkpoints" / str(model.pk) / "upload")
    assert Path(model.source).read_bytes() == tiny_archive(architecture, suffix).read_bytes()
    assert len(queued) == 1  # the validation task, sent after commit
    tasks.validate_checkpoint(model.pk)  # what the worker runs
    model.refresh_from_db()
    assert model.status == ModelEntry.Status.READY, model.status_reason
    assert not Path(model.source).exists()  # the extracted copy is kept, not the archive too
    page = admin_client.get(reverse("admin:generation_modelentry_change", args=[model.pk]))
    assert model.architecture in page.content.decode()


@pytest.mark.django_db
def test_a_hostile_upload_ends_invalid_and_shows_why(admin_client, media_root, tmp_path, tiny_checkpoint):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for file in tiny_checkpoint("gpt2").iterdir():
            tf.add(file, arcname=file.name)
        link = tarfile.TarInfo("tokenizer_config.json.link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    upload(admin_client, "evil", archive)
    model = ModelEntry.objects.get(name="evil")
    tasks.validate_checkpoint(model.pk)
    model.refresh_from_db()
    assert model.status == ModelEntry.Status.INVALID
    page = admin_client.get(reverse("admin:generation_modelentry_change", args=[model.pk])).content.decode()
    assert "is a link (symlink or hard link)" in page
    assert not (media_root / "checkpoints" / str(model.pk)).exists()


@pytest.mark.django_db
def test_a_server_side_directory_can_be_given_instead(admin_client, media_root, tiny_checkpoint):
    response = admin_client.post(ADD_URL, {"name": "shared", "server_path": str(tiny_checkpoint("llama")), **SETTINGS})
    assert response.status_code == 302
    model = ModelEntry.objects.get(name="shared")
    tasks.validate_checkpoint(model.pk)
    model.refresh_from_db()
    assert model.status == ModelEntry.Status.READY
    assert model.checkpoint_dir == str(tiny_checkpoint("llama"))


@pytest.mark.django_db
def test_the_add_form_wants_exactly_one_source(admin_client, media_root, tmp_path, tiny_checkpoint, tiny_archive):
    neither = admin_client.post(ADD_URL, {"name": "x", **SETTINGS})
    assert "either a checkpoint file to upload or a server path" in neither.content.decode()
    with tiny_archive("gpt2", ".zip").open("rb") as f:
        both = admin_client.post(
            ADD_URL, {"name": "x", "checkpoint_file": f, "server_path": str(tiny_checkpoint("gpt2")), **SETTINGS}
        )
    assert "not both" in both.content.decode()
    (tmp_path / "notes.txt").write_text("hello")
    bad_path = admin_client.post(ADD_URL, {"name": "x", "server_path": str(tmp_path / "notes.txt"), **SETTINGS})
    assert "notes.txt is not a checkpoint archive" in bad_path.content.decode()
    assert not ModelEntry.objects.exists()


@pytest.mark.django_db
def test_uploads_are_streamed_to_a_temporary_file_even_when_small(admin_user, media_root, tiny_archive, rf):
    """The add URL installs only TemporaryFileUploadHandler: no upload is held in memory, whatever its size."""
    from django.contrib.admin.sites import site
    from django.contrib.messages.storage.fallback import FallbackStorage
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.files.uploadedfile import TemporaryUploadedFile

    archive = tiny_archive("gpt2", ".zip")
    assert archive.stat().st_size < 2 * 1024 * 1024  # small enough for the in-memory handler otherwise
    with archive.open("rb") as f:
        request = rf.post(ADD_URL, {"name": "streamed", "checkpoint_file": f, **SETTINGS})
    request.user = admin_user
    request.session = SessionStore()
    request._messages = FallbackStorage(request)
    request._dont_enforce_csrf_checks = True
    view = site._registry[ModelEntry]._add_streaming_to_disk
    response = view(request)
    assert response.status_code == 302
    assert isinstance(request.FILES["checkpoint_file"], TemporaryUploadedFile)
    model = ModelEntry.objects.get(name="streamed")
    assert Path(model.source).read_bytes() == archive.read_bytes()


@pytest.mark.django_db
def test_a_run_started_from_the_admin_shows_progress_cancel_and_errors(admin_client, ready_model, eval_set, tmp_path):
    model = ready_model("gpt2", max_new_tokens=3)
    response = admin_client.post(
        reverse("admin:generation_generationrun_add"),
        {"model": model.pk, "eval_set": eval_set.pk, "prompt_limit": 4, "chunk_size": 2, "batch_size": 2},
    )
    assert response.status_code == 302
    run = GenerationRun.objects.get()
    assert run.chunks.count() == 2
    change_url = reverse("admin:generation_generationrun_change", args=[run.pk])
    page = admin_client.get(change_url).content.decode()
    assert "0/4" in page and 'http-equiv="refresh"' in page
    tasks.run_chunk(run.chunks.get(index=0).pk)
    page = admin_client.get(change_url).content.decode()
    assert "2/4" in page and "tokens/s" in page
    listing = admin_client.get(reverse("admin:generation_generationrun_changelist")).content.decode()
    assert "2/4 (50%)" in listing

    admin_client.post(
        reverse("admin:generation_generationrun_changelist"),
        {"action": "cancel_runs", "_selected_action": [run.pk]},
    )
    run.refresh_from_db()
    assert run.status == GenerationRun.Status.CANCELLED
    tasks.run_chunk(run.chunks.get(index=1).pk)
    assert Response.objects.count() == 2

    ModelEntry.objects.filter(pk=model.pk).update(checkpoint_dir=str(tmp_path / "missing-dir"))
    admin_client.post(
        reverse("admin:generation_generationrun_changelist"),
        {"action": "resume_runs", "_selected_action": [run.pk]},
    )
    tasks.run_chunk(run.chunks.get(index=1).pk)
    run.refresh_from_db()
    assert run.status == GenerationRun.Status.FAILED
    page = admin_client.get(change_url).content.decode()
    assert "Error: Chunk 1 (prompts 2-3)" in page and "missing-dir" in page
    assert 'http-equiv="refresh"' not in page


@pytest.mark.django_db
def test_every_generation_changelist_renders_with_search_and_filters(admin_client, ready_model, eval_set):
    ready_model("gpt2")
    for name in ("evalset", "prompt", "modelentry", "generationrun", "generationchunk", "response"):
        url = reverse(f"admin:generation_{name}_changelist")
        assert admin_client.get(url).status_code == 200
        assert admin_client.get(url, {"q": "user_oriented"}).status_code == 200
    prompts = admin_client.get(reverse("admin:generation_prompt_changelist"), {"category": "Grammarly"})
    assert "user_oriented_task_0" in prompts.content.decode()


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
@pytest.mark.integration
def test_an_upload_is_validated_by_a_real_worker(celery_worker, admin_client, media_root, tiny_archive):
    celery_worker(queues="default")
    upload(admin_client, "via-worker", tiny_archive("llama", ".tar.gz"))
    model = ModelEntry.objects.get(name="via-worker")

    def status():
        model.refresh_from_db()
        return model.status in (ModelEntry.Status.READY, ModelEntry.Status.INVALID)

    wait_for(status, timeout=120, message="the worker to validate the upload")
    assert model.status == ModelEntry.Status.READY, model.status_reason


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        ({"prompt_limit": 0}, "prompt_limit", "The prompt limit (only the first N prompts) must be a whole number"),
        ({"chunk_size": 0}, "chunk_size", "The chunk size (prompts per worker task) must be a whole number from 1"),
        ({"batch_size": -8}, "batch_size", "The batch size (prompts per forward batch) must be a whole number"),
    ],
)
def test_the_admin_refuses_bad_run_options_with_run_starts_message_under_the_field(
    admin_client, eval_set, options, field, message
):
    # A ready entry is all run_start looks at before it refuses (no checkpoint is loaded to start a run).
    model = ModelEntry.objects.create(name="ready-one", kind=ModelEntry.Kind.CHECKPOINT, status=ModelEntry.Status.READY)
    response = admin_client.post(
        reverse("admin:generation_generationrun_add"), {"model": model.pk, "eval_set": eval_set.pk, **options}
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == [field] and errors[field][0].startswith(message)
    assert not GenerationRun.objects.exists()


@pytest.mark.django_db
def test_the_admin_refuses_an_eval_set_without_prompts_under_its_field(admin_client):
    from generation.models import EvalSet

    model = ModelEntry.objects.create(name="ready-one", kind=ModelEntry.Kind.CHECKPOINT, status=ModelEntry.Status.READY)
    empty = EvalSet.objects.create(name="empty-set")
    response = admin_client.post(
        reverse("admin:generation_generationrun_add"), {"model": model.pk, "eval_set": empty.pk}
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "eval_set": ["Eval set 'empty-set' has no prompts; import some first."]
    }
    assert not GenerationRun.objects.exists()


@pytest.mark.django_db
def test_adding_a_run_for_a_pair_that_has_one_resumes_it_like_generate(admin_client, eval_set):
    model = ModelEntry.objects.create(name="ready-one", kind=ModelEntry.Kind.CHECKPOINT, status=ModelEntry.Status.READY)
    add = reverse("admin:generation_generationrun_add")
    first = admin_client.post(add, {"model": model.pk, "eval_set": eval_set.pk, "prompt_limit": 4, "chunk_size": 2})
    run = GenerationRun.objects.get()
    assert first.status_code == 302 and (run.total_prompts, run.chunks.count()) == (4, 2)
    again = admin_client.post(add, {"model": model.pk, "eval_set": eval_set.pk})
    assert again.status_code == 302
    assert GenerationRun.objects.get().pk == run.pk and run.chunks.count() == 2  # the same run, not a second
