"""The batched generator: load a safetensors causal LM and answer many prompts at once.

Plain module, no Django: the Celery task, the tests and the benchmark all call
it. Prompts are sorted by length, longest first. LLaMA-architecture models
(SmolLM2 and most open instruction models) go through continuous batching
(:mod:`generation.continuous`): ``batch_size`` rows decode together and a row
that ends hands its place to the next prompt at once, so finished answers cost
nothing while long ones run on. Other architectures are cut into fixed batches
for ``transformers``' ``generate`` (left padding, so every row's answer starts
at the same column), each batch running until every row has ended. Either way
a callback receives finished answers in groups of ``batch_size`` as they come,
so the caller can store them before the rest are done.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from generation.prompting import format_prompt


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 means greedy decoding
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 8

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


@dataclass(frozen=True)
class PromptItem:
    """One prompt to answer; ``key`` is the caller's handle (e.g. a Prompt id)."""

    key: Any
    instruction: str
    input: str = ""


@dataclass(frozen=True)
class GenerationResult:
    key: Any
    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float  # this item's share of its batch's wall time
    finish_reason: str  # "stop" (end of sequence) or "length" (max_new_tokens reached)


@dataclass
class LoadedModel:
    path: str
    model: Any
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype
    eos_token_ids: tuple[int, ...]
    pad_token_id: int
    # The continuous-batching forward pass, built on first use (None: not built yet, False: not supported).
    decoder: Any = None


def pick_dtype(requested: str, *, cuda: bool) -> torch.dtype:
    """``auto`` is bf16 (or fp16 on older GPUs) on CUDA and fp32 on CPU, where half precision is slow."""
    if requested == "auto":
        if cuda:
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if requested not in dtypes:
        raise ValueError(f"Unknown dtype {requested!r}; choose auto, float32, bfloat16 or float16.")
    return dtypes[requested]


def _weights_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.glob("*.safetensors"))


def _eos_ids(model: Any, tokenizer: Any) -> tuple[int, ...]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), getattr(model, "config", None)):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return tuple(sorted(ids))


def load_model(path: str | Path, *, dtype: str = "auto") -> LoadedModel:
    """Load a checkpoint directory from safetensors only (never pickle) on the best device here.

    CUDA when present; a model whose weights do not fit in 90% of one GPU is
    spread over the visible GPUs (and CPU) by accelerate's ``device_map="auto"``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    cuda = torch.cuda.is_available()
    torch_dtype = pick_dtype(dtype, cuda=cuda)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    kwargs: dict[str, Any] = {"use_safetensors": True, "dtype": torch_dtype}
    if cuda:
        bytes_needed = _weights_bytes(path)
        _, gpu_total = torch.cuda.mem_get_info(0)
        if bytes_needed > 0.9 * gpu_total or torch.cuda.device_count() > 1 and bytes_needed > 0.5 * gpu_total:
            kwargs["device_map"] = "auto"
    model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    if cuda and "device_map" not in kwargs:
        model.to("cuda")
    model.eval()
    device = next(model.parameters()).device
    eos = _eos_ids(model, tokenizer)
    if tokenizer.pad_token_id is not None:
        pad = int(tokenizer.pad_token_id)
    elif eos:
        pad = eos[0]
    else:
        pad = 0
    return LoadedModel(
        path=str(path),
        model=model,
        tokenizer=tokenizer,
        device=device,
        dtype=torch_dtype,
        eos_token_ids=eos,
        pad_token_id=pad,
    )


# A worker keeps one model in memory while it serves that model; asking for
# another one frees the first (a GPU rarely holds two large models).
_cache_lock = threading.Lock()
_cache: dict[tuple[str, str, str], LoadedModel] = {}


def cached_model(path: str | Path, *, dtype: str = "auto", version: str = "") -> LoadedModel:
    """The process-wide loaded model for ``path``; ``version`` (e.g. the weights' sha256) invalidates it."""
    key = (str(path), dtype, version)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
        clear_model_cache()
        loaded = load_model(path, dtype=dtype)
        _cache[key] = loaded
        return loaded


def clear_model_cache() -> None:
    _cache.clear()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def build_prompts(loaded: LoadedModel, items: Sequence[PromptItem], template: str) -> list[list[int]]:
    """Token ids of each item's prompt text under the model's template."""
    tokenizer = loaded.tokenizer
    # A chat template writes its own special tokens (BOS included).
    add_special = template != "chat"
    texts = [format_prompt(template, item.instruction, item.input, tokenizer=tokenizer) for item in items]
    encoded = tokenizer(texts, add_special_tokens=add_special)["input_ids"]
    return [list(ids) for ids in encoded]


def _left_pad(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return ids.to(device), mask.to(device)


def _max_positions(loaded: LoadedModel) -> int:
    config = loaded.model.config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 0  # unknown: no truncation


def _generate_kwargs(loaded: LoadedModel, settings: GenerationSettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "max_new_tokens": settings.max_new_tokens,
        "pad_token_id": loaded.pad_token_id,
        "eos_token_id": list(loaded.eos_token_ids) or None,
    }
    if settings.greedy:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p, top_k=None)
    return kwargs


def _decode_row(loaded: LoadedModel, new_tokens: Sequence[int], max_new_tokens: int) -> tuple[str, int, str]:
    eos = set(loaded.eos_token_ids)
    cut = next((i for i, tok in enumerate(new_tokens) if tok in eos), None)
    if cut is None:
        kept = list(new_tokens)
        reason = "length" if len(kept) >= max_new_tokens else "stop"
    else:
        kept = list(new_tokens[:cut])
        reason = "stop"
    text = loaded.tokenizer.decode(kept, skip_special_tokens=True).strip()
    return text, len(kept), reason


def continuous_decoder(loaded: LoadedModel) -> Any:
    """The model's :class:`generation.continuous.LlamaDecoder`, or None when its architecture is not supported."""
    from generation import continuous

    if loaded.decoder is None:
        loaded.decoder = continuous.LlamaDecoder(loaded.model) if continuous.supports(loaded.model) else False
    return loaded.decoder or None


def _result(
    loaded: LoadedModel,
    item: PromptItem,
    prompt: Sequence[int],
    tokens: Sequence[int],
    settings: GenerationSettings,
    seconds: float,
) -> GenerationResult:
    text, n_tokens, reason = _decode_row(loaded, tokens, settings.max_new_tokens)
    return GenerationResult(
        key=item.key,
        text=text,
        prompt_tokens=len(prompt),
        completion_tokens=n_tokens,
        seconds=seconds,
        finish_reason=reason,
    )


def _generate_continuous(
    loaded: LoadedModel,
    decoder: Any,
    items: Sequence[PromptItem],
    encoded: list[list[int]],
    order: list[int],
    settings: GenerationSettings,
    on_batch: Callable[[list[GenerationResult]], object] | None,
    should_stop: Callable[[], bool] | None,
) -> list[GenerationResult]:
    from generation import continuous

    results: list[GenerationResult] = []
    pending: list[GenerationResult] = []
    answers = continuous.generate(
        decoder,
        encoded,
        order,
        slots=settings.batch_size,
        max_new_tokens=settings.max_new_tokens,
        eos_token_ids=loaded.eos_token_ids,
        temperature=settings.temperature,
        top_p=settings.top_p,
        seed=settings.seed,
    )
    try:
        for answer in answers:
            pending.append(
                _result(loaded, items[answer.index], encoded[answer.index], answer.tokens, settings, answer.seconds)
            )
            if len(pending) >= settings.batch_size or len(results) + len(pending) == len(items):
                if on_batch is not None:
                    on_batch(pending)
                results.extend(pending)
                pending = []
                if should_stop is not None and should_stop():
                    break
    finally:
        answers.close()  # stops the rows still in flight when we leave early
    return results


def generate_batched(
    loaded: LoadedModel,
    items: Sequence[PromptItem],
    *,
    template: str,
    settings: GenerationSettings,
    on_batch: Callable[[list[GenerationResult]], object] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[GenerationResult]:
    """Answer ``items`` ``settings.batch_size`` at a time; call ``on_batch`` with each group of finished answers.

    ``should_stop`` is checked before the first prompt and after each group
    (cancellation); the answers already handed to ``on_batch`` are returned.
    Greedy answers do not depend on the batch. With sampling, the same seed
    gives the same answers: per prompt on LLaMA-architecture models, per batch
    composition on the others.
    """
    if not items:
        return []
    encoded = build_prompts(loaded, items, template)
    room = _max_positions(loaded) - settings.max_new_tokens
    if room > 0:
        # Too long for the model's context: keep the end, where the template asks for the response.
        encoded = [ids[-room:] if len(ids) > room else ids for ids in encoded]
    # Longest first: an out-of-memory batch shows up at once, not at the end.
    order = sorted(range(len(items)), key=lambda i: len(encoded[i]), reverse=True)
    decoder = continuous_decoder(loaded) if all(encoded) else None
    if decoder is not None:
        if should_stop is not None and should_stop():
            return []
        return _generate_continuous(loaded, decoder, items, encoded, order, settings, on_batch, should_stop)
    kwargs = _generate_kwargs(loaded, settings)
    results: list[GenerationResult] = []
    for start in range(0, len(order), settings.batch_size):
        if should_stop is not None and should_stop():
            break
        batch = order[start : start + settings.batch_size]
        rows = [encoded[i] for i in batch]
        input_ids, attention_mask = _left_pad(rows, loaded.pad_token_id, loaded.device)
        if not settings.greedy:
            torch.manual_seed(settings.seed)
        began = time.perf_counter()
        with torch.inference_mode():
            output = loaded.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        seconds = time.perf_counter() - began
        new_tokens = output[:, input_ids.shape[1] :].tolist()
        batch_results = [
            _result(loaded, items[item_index], rows[row_index], new_tokens[row_index], settings, seconds / len(batch))
            for row_index, item_index in enumerate(batch)
        ]
        if on_batch is not None:
            on_batch(batch_results)
        results.extend(batch_results)
    return results
