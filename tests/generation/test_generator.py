"""The batched generator on real tiny checkpoints of three architectures (no Django)."""

from __future__ import annotations

import pytest

from generation.generator import (
    GenerationSettings,
    PromptItem,
    cached_model,
    clear_model_cache,
    generate_batched,
    load_model,
)
from tests.generation.tiny_models import eval_set_rows

ARCHITECTURES = ("llama", "gpt2", "gpt_neox")


def items(n: int = 6) -> list[PromptItem]:
    rows = eval_set_rows()[:n]
    return [
        PromptItem(key=row["id"], instruction=row["instruction"], input=row["instances"][0]["input"]) for row in rows
    ]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_batched_greedy_answers_equal_one_prompt_at_a_time(tiny_checkpoint, architecture):
    loaded = load_model(tiny_checkpoint(architecture))
    prompts = items(6)
    settings = GenerationSettings(max_new_tokens=6, batch_size=4)
    batched = {r.key: r for r in generate_batched(loaded, prompts, template="alpaca", settings=settings)}
    single = GenerationSettings(max_new_tokens=6, batch_size=1)
    for item in prompts:
        (alone,) = generate_batched(loaded, [item], template="alpaca", settings=single)
        assert batched[item.key].text == alone.text  # left padding changes nothing
        assert batched[item.key].prompt_tokens == alone.prompt_tokens
    assert set(batched) == {item.key for item in prompts}


def test_results_carry_token_counts_and_length_finish(tiny_checkpoint):
    loaded = load_model(tiny_checkpoint("llama"))
    results = generate_batched(loaded, items(3), template="plain", settings=GenerationSettings(max_new_tokens=5))
    for result in results:
        assert result.completion_tokens == 5
        assert result.finish_reason == "length"
        assert result.prompt_tokens > 0
        assert result.seconds > 0


def test_a_model_that_emits_eos_stops_with_reason_stop(tiny_checkpoint):
    loaded = load_model(tiny_checkpoint("gpt2", always_eos=True))
    results = generate_batched(loaded, items(4), template="alpaca", settings=GenerationSettings(max_new_tokens=20))
    assert [(r.finish_reason, r.completion_tokens, r.text) for r in results] == [("stop", 0, "")] * 4


def test_callback_receives_each_batch_as_it_ends_longest_prompts_first(tiny_checkpoint):
    loaded = load_model(tiny_checkpoint("gpt2"))
    seen: list[list[int]] = []
    results = generate_batched(
        loaded,
        items(7),
        template="alpaca",
        settings=GenerationSettings(max_new_tokens=2, batch_size=3),
        on_batch=lambda batch: seen.append([r.prompt_tokens for r in batch]),
    )
    assert [len(batch) for batch in seen] == [3, 3, 1]
    flat = [n for batch in seen for n in batch]
    assert flat == sorted(flat, reverse=True)
    assert len(results) == 7


def test_should_stop_is_checked_between_batches(tiny_checkpoint):
    loaded = load_model(tiny_checkpoint("gpt2"))
    batches: list[int] = []
    results = generate_batched(
        loaded,
        items(6),
        template="plain",
        settings=GenerationSettings(max_new_tokens=2, batch_size=2),
        on_batch=lambda batch: batches.append(len(batch)),
        should_stop=lambda: len(batches) >= 1,
    )
    assert batches == [2]
    assert len(results) == 2


def test_sampling_with_a_seed_is_reproducible(tiny_checkpoint):
    loaded = load_model(tiny_checkpoint("llama"))
    settings = GenerationSettings(max_new_tokens=8, temperature=1.0, top_p=0.9, seed=7, batch_size=4)
    first = generate_batched(loaded, items(4), template="alpaca", settings=settings)
    second = generate_batched(loaded, items(4), template="alpaca", settings=settings)
    assert [r.text for r in first] == [r.text for r in second]


def test_chat_template_prompts_are_generated(tiny_checkpoint):
    loaded = load_model(tiny_checkpoint("gpt_neox"))
    results = generate_batched(loaded, items(2), template="chat", settings=GenerationSettings(max_new_tokens=3))
    assert len(results) == 2


def test_the_process_cache_keeps_one_model(tiny_checkpoint):
    clear_model_cache()
    first = cached_model(tiny_checkpoint("llama"))
    assert cached_model(tiny_checkpoint("llama")) is first
    other = cached_model(tiny_checkpoint("gpt2"))
    assert other is not first
    assert cached_model(tiny_checkpoint("llama")) is not first  # the first was evicted, so it is loaded again
    clear_model_cache()


def test_prompts_longer_than_the_context_keep_their_end(tmp_path):
    from tests.generation.tiny_models import build_checkpoint

    loaded = load_model(build_checkpoint("gpt2", tmp_path / "short-context", positions=64))
    long_item = PromptItem(key="long", instruction="Summarise this text. " * 40)
    (result,) = generate_batched(loaded, [long_item], template="alpaca", settings=GenerationSettings(max_new_tokens=8))
    assert result.prompt_tokens == 64 - 8
    assert result.completion_tokens == 8
