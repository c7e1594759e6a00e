"""Every response records how it was made: checkpoint hash, template and decoding settings, or the imported file."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from generation import services, tasks
from generation.imports import outputs_export
from generation.models import Response

pytestmark = pytest.mark.django_db


def test_generated_responses_record_the_checkpoint_template_and_decoding_they_were_made_with(
    ready_model, eval_set, admin_client, tmp_path
):
    model = ready_model("llama", name="sampled", template="chat", temperature=0.7, top_p=0.9, seed=5, max_new_tokens=3)
    run = services.run_start(model=model, eval_set=eval_set, prompt_limit=3, batch_size=2)
    for chunk_id in run.chunks.values_list("pk", flat=True):
        tasks.run_chunk(chunk_id)
    expected = {
        "source": "generated",
        "model": "sampled",
        "checkpoint_sha256": model.weights_sha256,
        "converted_from_sha256": None,
        "template": "chat",
        "chat_template_sha256": model.chat_template_sha256,
        "decoding": "sampling",
        "max_new_tokens": 3,
        "temperature": 0.7,
        "top_p": 0.9,
        "seed": 5,
        "dtype": "auto",
        "batch_size": 2,
    }
    responses = list(Response.objects.filter(model=model))
    assert len(responses) == 3
    assert len(model.weights_sha256) == len(model.chat_template_sha256) == 64
    assert all(r.generator_config == expected for r in responses)

    # Settings changed later do not rewrite what the stored answers were made with.
    model.temperature, model.template = 0.0, "alpaca"
    model.save(update_fields=["temperature", "template"])
    assert Response.objects.get(pk=responses[0].pk).generator_config == expected

    page = admin_client.get(reverse("admin:generation_response_change", args=[responses[0].pk])).content.decode()
    assert model.weights_sha256 in page and "&quot;temperature&quot;: 0.7" in page
    listing = admin_client.get(reverse("admin:generation_response_changelist")).content.decode()
    assert "chat template, T=0.7, top-p=0.9, seed 5" in listing

    out = tmp_path / "out.json"
    outputs_export(model_name="sampled", eval_set_name=eval_set.name, path=out)
    exported = json.loads(out.read_text())
    assert [e["generator"] for e in exported] == ["sampled"] * 3  # AlpacaEval's key stays the model name
    assert all(e["generator_config"] == expected for e in exported)


def test_a_greedy_alpaca_model_says_greedy_and_has_no_chat_template_hash(ready_model, eval_set):
    model = ready_model("gpt2", name="greedy", template="alpaca", max_new_tokens=2)
    run = services.run_start(model=model, eval_set=eval_set, prompt_limit=1)
    tasks.run_chunk(run.chunks.get().pk)
    config = Response.objects.get(model=model).generator_config
    assert (config["decoding"], config["template"], config["chat_template_sha256"]) == ("greedy", "alpaca", None)
