"""Continuous batching on a tiny real LLaMA checkpoint: same answers as transformers, rows independent of each other."""

from __future__ import annotations

import dataclasses

import torch

from generation.generator import (
    GenerationSettings,
    PromptItem,
    build_prompts,
    continuous_decoder,
    generate_batched,
    load_model,
)
from tests.generation.tiny_models import eval_set_rows


def items(n: int, start: int = 0) -> list[PromptItem]:
    rows = eval_set_rows()[start : start + n]
    return [
        PromptItem(key=row["id"], instruction=row["instruction"], input=row["instances"][0]["input"]) for row in rows
    ]


def transformers_greedy(loaded, item: PromptItem, max_new_tokens: int) -> list[int]:
    """The plain way: one ``model.generate`` call for one prompt, greedy; its new tokens up to end of sequence."""
    (ids,) = build_prompts(loaded, [item], "alpaca")
    with torch.inference_mode():
        out = loaded.model.generate(
            input_ids=torch.tensor([ids]),
            attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=loaded.pad_token_id,
            eos_token_id=list(loaded.eos_token_ids),
        )
    new = out[0, len(ids) :].tolist()
    eos = set(loaded.eos_token_ids)
    return new[: next((i for i, t in enumerate(new) if t in eos), len(new))]


def test_batched_greedy_answers_equal_transformers_one_prompt_at_a_time(tiny_checkpoint):
    loaded = load_model(tiny_checkpoint("llama"))
    assert continuous_decoder(loaded) is not None  # a LLaMA model takes the continuous path
    prompts = items(7)
    # 7 prompts through 3 rows: rows are refilled as they end, and the last ones are packed together.
    results = generate_batched(
        loaded, prompts, template="alpaca", settings=GenerationSettings(max_new_tokens=12, batch_size=3)
    )
    by_key = {r.key: r for r in results}
    assert set(by_key) == {item.key for item in prompts}
    for item in prompts:
        # transformers runs on the same model object after its projections were fused into shared matrices.
        expected = transformers_greedy(loaded, item, 12)
        assert by_key[item.key].text == loaded.tokenizer.decode(expected, skip_special_tokens=True).strip()
        assert by_key[item.key].completion_tokens == len(expected)


def test_a_row_that_ends_early_changes_no_other_answer(tiny_checkpoint):
    loaded = load_model(tiny_checkpoint("llama"))
    prompts = items(4)
    settings = GenerationSettings(max_new_tokens=10, batch_size=4)
    alone = {item.key: generate_batched(loaded, [item], template="alpaca", settings=settings)[0] for item in prompts}
    # Make a token of the first answer an end-of-sequence token: that row now ends early, the others run on.
    first = transformers_greedy(loaded, prompts[0], 10)
    cut = next(i for i in range(1, len(first)) if first[i] not in first[:i])
    stop_token = first[cut]
    stopping = dataclasses.replace(loaded, eos_token_ids=(*loaded.eos_token_ids, stop_token))
    results = {r.key: r for r in generate_batched(stopping, prompts, template="alpaca", settings=settings)}
    short = results[prompts[0].key]
    assert short.finish_reason == "stop"
    assert short.completion_tokens == cut < 10
    for item in prompts[1:]:
        solo = generate_batched(stopping, [item], template="alpaca", settings=settings)[0]
        assert results[item.key].text == solo.text
        if stop_token not in transformers_greedy(loaded, item, 10):
            assert results[item.key].text == alone[item.key].text  # untouched by the new stop token


def test_sampled_answers_depend_on_the_prompt_and_seed_not_on_the_batch(tiny_checkpoint):
    loaded = load_model(tiny_checkpoint("llama"))
    prompts = items(5)
    sampled = GenerationSettings(max_new_tokens=8, temperature=1.0, top_p=0.9, seed=7, batch_size=4)
    together = {r.key: r.text for r in generate_batched(loaded, prompts, template="alpaca", settings=sampled)}
    one_by_one = {
        item.key: generate_batched(
            loaded, [item], template="alpaca", settings=dataclasses.replace(sampled, batch_size=1)
        )[0].text
        for item in prompts
    }
    assert together == one_by_one
    other_seed = generate_batched(loaded, prompts, template="alpaca", settings=dataclasses.replace(sampled, seed=8))
    assert {r.key: r.text for r in other_seed} != together
    greedy = generate_batched(loaded, prompts, template="alpaca", settings=GenerationSettings(max_new_tokens=8))
    assert {r.key: r.text for r in greedy} != together


def test_answers_reach_the_callback_in_groups_as_they_end_and_stop_drops_the_rest(tiny_checkpoint):
    loaded = load_model(tiny_checkpoint("llama"))
    groups: list[list] = []
    results = generate_batched(
        loaded,
        items(7),
        template="alpaca",
        settings=GenerationSettings(max_new_tokens=3, batch_size=3),
        on_batch=lambda batch: groups.append(list(batch)),
    )
    assert [len(g) for g in groups] == [3, 3, 1]
    assert [r.key for g in groups for r in g] == [r.key for r in results]
    assert len({r.key for r in results}) == 7
    assert all(r.seconds > 0 for r in results)

    stopped: list[list] = []
    partial = generate_batched(
        loaded,
        items(7),
        template="alpaca",
        settings=GenerationSettings(max_new_tokens=3, batch_size=3),
        on_batch=lambda batch: stopped.append(list(batch)),
        should_stop=lambda: len(stopped) >= 1,
    )
    assert [len(g) for g in stopped] == [3]
    assert partial == stopped[0]


def test_cpu_weights_are_packed_for_onednn_only_when_the_copy_fits_and_answers_do_not_change(
    tiny_checkpoint, monkeypatch
):
    from generation import continuous

    prompts = items(6)
    settings = GenerationSettings(max_new_tokens=12, batch_size=4)
    packed = load_model(tiny_checkpoint("llama"))
    assert continuous_decoder(packed).linear.packed
    # Little memory left: the decoder keeps the model's own matrices (no second copy) and plain F.linear.
    monkeypatch.setattr(continuous, "_available_bytes", lambda: 1024)
    plain = load_model(tiny_checkpoint("llama"))
    assert not continuous_decoder(plain).linear.packed
    q_proj = plain.model.model.layers[0].self_attn.q_proj
    assert continuous_decoder(plain).layers[0].qkv.data_ptr() == q_proj.weight.data_ptr()
    on_packed = {r.key: r.text for r in generate_batched(packed, prompts, template="alpaca", settings=settings)}
    on_plain = {r.key: r.text for r in generate_batched(plain, prompts, template="alpaca", settings=settings)}
    assert on_packed == on_plain


def test_a_packed_row_is_computed_bit_for_bit_alike_whatever_rows_sit_beside_it(tiny_checkpoint):
    loaded = load_model(tiny_checkpoint("llama"))
    decoder = continuous_decoder(loaded)
    prompts = build_prompts(loaded, items(5), "alpaca")
    width = max(len(p) for p in prompts) + 2
    cache = decoder.new_cache(5, width)
    with torch.inference_mode():
        first = [decoder.prefill(ids, cache, slot).argmax() for slot, ids in enumerate(prompts)]
        positions = torch.tensor([len(ids) for ids in prompts])
        together = decoder.step(torch.stack(first), positions, cache)
        alone = decoder.step(torch.stack(first[:1]), positions[:1], cache)
    assert torch.equal(together[0], alone[0])


def test_the_memory_left_for_a_packed_copy_is_the_kernels_estimate_within_the_containers_limit(tmp_path, monkeypatch):
    from generation import continuous

    meminfo, cgroup = tmp_path / "meminfo", tmp_path / "cgroup"
    meminfo.write_text("MemTotal:       16777216 kB\nMemFree:          524288 kB\nMemAvailable:    8388608 kB\n")
    cgroup.mkdir()
    monkeypatch.setattr(continuous, "_MEMINFO", meminfo)
    monkeypatch.setattr(continuous, "_CGROUP", cgroup)
    # No cgroup files (not in a container): what the kernel can give, page cache included, not only free pages.
    assert continuous._available_bytes() == 8 * 2**30
    (cgroup / "memory.max").write_text("max\n")
    (cgroup / "memory.current").write_text(str(2**30))
    assert continuous._available_bytes() == 8 * 2**30
    # A container limited to 2 GiB that uses 1.5 GiB has half a GiB left, whatever the host has.
    (cgroup / "memory.max").write_text(str(2 * 2**30))
    (cgroup / "memory.current").write_text(str(3 * 2**29))
    assert continuous._available_bytes() == 2**29
