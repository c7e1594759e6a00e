"""The playground: staff only; a worker answers with each model's template and decoding; not evaluation data."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from generation import tasks
from generation.models import ModelEntry, PlaygroundAnswer, Response
from generation.prompting import format_alpaca, format_chat
from tests.comparisons.factories import build_campaign, invite_rater, make_user
from tests.factories import ModelEntryFactory
from tests.worker import wait_for

PAGE = reverse("generation:playground")


def answer_url(token: str) -> str:
    return reverse("generation:playground_answer", args=[token])


def ask(client, *models: ModelEntry, instruction: str = "Name a colour.", input_text: str = ""):
    data = {"instruction": instruction, "input": input_text, "model_a": models[0].pk}
    if len(models) > 1:
        data["model_b"] = models[1].pk
    return client.post(PAGE, data)


def tokens_of(response) -> list[str]:
    return parse_qs(urlparse(response["Location"]).query)["a"]


@pytest.mark.django_db
def test_two_models_answer_side_by_side_with_their_own_template_and_the_exact_prompt(
    admin_client, ready_model, django_capture_on_commit_callbacks
):
    chat = ready_model("llama", name="chatty", template="chat", temperature=0.7, top_p=0.9, seed=3, max_new_tokens=5)
    alpaca = ready_model("gpt2", name="alpaca-style", template="alpaca", max_new_tokens=4)
    with django_capture_on_commit_callbacks() as queued:
        response = ask(admin_client, chat, alpaca, instruction="Add the numbers.", input_text="2 and 3")
    assert response.status_code == 302
    assert len(queued) == 2  # one worker task per model, sent after commit
    first, second = tokens_of(response)

    waiting = admin_client.get(response["Location"]).content.decode()
    assert "chatty" in waiting and "alpaca-style" in waiting and "queued" in waiting

    for answer in PlaygroundAnswer.objects.all():
        tasks.playground_answer(answer.pk)  # what the worker runs

    a = admin_client.get(answer_url(first)).json()
    b = admin_client.get(answer_url(second)).json()
    assert (a["model"], a["status"], a["finished"]) == ("chatty", "done", True)
    assert (b["model"], b["status"]) == ("alpaca-style", "done")
    tokenizer = __import__("transformers").AutoTokenizer.from_pretrained(chat.checkpoint_dir)
    assert a["prompt_text"] == format_chat("Add the numbers.", "2 and 3", tokenizer=tokenizer)
    assert b["prompt_text"] == format_alpaca("Add the numbers.", "2 and 3")
    assert a["text"].strip() and 1 <= a["completion_tokens"] <= 5
    assert (a["settings"]["template"], a["settings"]["decoding"], a["settings"]["temperature"]) == (
        "chat",
        "sampling",
        0.7,
    )
    assert (b["settings"]["template"], b["settings"]["decoding"]) == ("alpaca", "greedy")
    assert b["completion_tokens"] <= 4 and b["finish_reason"] in ("stop", "length")

    done = admin_client.get(response["Location"]).content.decode()
    assert "### Instruction:" in done and "finish reason" in done
    assert not Response.objects.exists()  # playground answers are not evaluation responses


@pytest.mark.django_db
def test_the_models_page_links_to_the_playground_which_lists_only_ready_checkpoints(admin_client, ready_model):
    ready_model("llama", name="ready-one")
    ModelEntryFactory(name="imported-one", kind=ModelEntry.Kind.IMPORTED)
    ModelEntryFactory(name="pending-one", kind=ModelEntry.Kind.CHECKPOINT, status=ModelEntry.Status.PENDING)
    assert PAGE in admin_client.get(reverse("admin:generation_modelentry_changelist")).content.decode()
    page = admin_client.get(PAGE).content.decode()
    assert "ready-one" in page and "imported-one" not in page and "pending-one" not in page


@pytest.mark.django_db
def test_bad_requests_are_refused_and_queue_nothing(admin_client, ready_model):
    model = ready_model("llama", name="ready-one")
    imported = ModelEntryFactory(name="imported-one", kind=ModelEntry.Kind.IMPORTED)
    empty = ask(admin_client, model, instruction="   ")
    assert empty.status_code == 400 and "Write an instruction" in empty.content.decode()
    not_ready = ask(admin_client, imported)
    assert not_ready.status_code == 400 and "Only ready checkpoint models" in not_ready.content.decode()
    assert admin_client.get(answer_url("0" * 32)).status_code == 404
    assert not PlaygroundAnswer.objects.exists()


@pytest.mark.django_db
def test_raters_analysts_other_users_and_anonymous_visitors_are_refused(client, ready_model):
    model = ready_model("llama", name="secret-model")
    answer = PlaygroundAnswer.objects.create(token="t" * 32, model=model, instruction="hi", text="answer text")
    campaign = build_campaign()
    analyst = make_user("ana")
    analyst.groups.add(Group.objects.get_or_create(name="analyst")[0])
    users = {"rater": invite_rater(campaign).user, "analyst": analyst, "plain": make_user("plain")}

    anonymous_page = client.get(PAGE)
    assert anonymous_page.status_code == 302 and reverse("admin:login") in anonymous_page["Location"]
    assert client.get(answer_url(answer.token)).status_code == 401
    for who, user in users.items():
        client.force_login(user)
        for response in (client.get(PAGE), ask(client, model), client.get(answer_url(answer.token))):
            assert response.status_code == 403, who
            assert b"secret-model" not in response.content and b"answer text" not in response.content
        client.logout()
    assert PlaygroundAnswer.objects.count() == 1


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_answers_on_the_generation_queue(celery_worker, media_root, tiny_checkpoint, client):
    from generation import services

    model = services.model_take_in(name="tiny", source=str(tiny_checkpoint("llama")), template="chat", max_new_tokens=4)
    staff = make_user("boss", is_staff=True)
    client.force_login(staff)
    celery_worker(queues="generation")  # the playground task goes to the generation queue, like runs
    [token] = tokens_of(ask(client, model))
    answer = wait_for(
        lambda: (data := client.get(answer_url(token)).json())["finished"] and data,
        timeout=120,
        message="the worker's answer",
    )
    assert answer["status"] == "done", answer
    assert answer["prompt_text"].startswith("<|user|>\nName a colour.")
