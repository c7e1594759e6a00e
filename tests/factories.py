"""factory_boy factories shared by the test suite (add yours here)."""

from __future__ import annotations

import factory

from generation.models import EvalSet, ModelEntry, Prompt, Response


class EvalSetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EvalSet

    name = factory.Sequence(lambda n: f"eval-set-{n}")


class PromptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Prompt

    eval_set = factory.SubFactory(EvalSetFactory)
    position = factory.Sequence(lambda n: n)
    external_id = factory.LazyAttribute(lambda p: f"task_{p.position}")
    instruction = factory.Sequence(lambda n: f"Write a haiku about the number {n}.")
    input = ""
    category = "Poetry"


class ModelEntryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelEntry

    name = factory.Sequence(lambda n: f"model-{n}")
    kind = ModelEntry.Kind.CHECKPOINT
    status = ModelEntry.Status.READY


class ResponseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Response

    prompt = factory.SubFactory(PromptFactory)
    model = factory.SubFactory(ModelEntryFactory)
    text = factory.Sequence(lambda n: f"Response number {n}.")
    finish_reason = Response.FinishReason.STOP
