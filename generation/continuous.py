"""Continuous batching for LLaMA-family models: a finished row's place goes to the next prompt at once.

Plain module, no Django, only torch. ``transformers``' ``generate`` runs a
batch until its longest answer ends, so on answers of natural length most of
a batch's rows are finished and padding for most of its steps. Here each of
``slots`` rows of a static key/value cache holds one prompt; every step decodes
one token for all live rows; a row that meets an end-of-sequence token (or its
token budget) leaves, and the next prompt (longest first) is prefilled into
its place. When no prompt is left the live rows are packed to the front, so a
long tail costs only its own rows.

The forward pass is written out for the LLaMA architecture (RMSNorm, rotary
positions, grouped-query attention, SwiGLU) on the model's own weights, with
the query/key/value and gate/up projections fused into one matrix each (the
model's modules become views into them, so memory is not doubled). Each row's
computation depends only on its own tokens: greedy answers do not depend on
which other prompts share the batch, and sampled ones use one random generator
per row seeded from the settings' seed and the prompt's tokens.

On the CPU in float32 the weight matmuls run through oneDNN on weights packed
once into its blocked layout (:class:`_Linears`): with the few rows of a
decoding step, MKL's plain GEMM spends most of its time reading the weights,
and the packed layout ran the SmolLM2 step's matmuls 1.5x faster here. The
packed copy costs the linear weights' memory once more, so it is made only
when that fits well within the memory available. Packed, a row's result is the
same bit for bit whatever the number of rows beside it (MKL's is not, for one
or three rows).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import deque
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

# Rotary variants whose frequencies are fixed once at load time (the dynamic ones change with the length).
_STATIC_ROPE = {"default", "linear", "llama3"}


def supports(model: Any) -> bool:
    """Whether ``model`` is a plain LLaMA-architecture causal LM that :class:`LlamaDecoder` computes exactly."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) != "llama":
        return False
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    rope_type = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else "default"
    return (
        rope_type in _STATIC_ROPE
        and not getattr(config, "attention_bias", False)
        and not getattr(config, "mlp_bias", False)
        and getattr(config, "hidden_act", "silu") == "silu"
        and getattr(config, "pretraining_tp", 1) == 1
        and hasattr(model, "lm_head")
        and hasattr(getattr(model, "model", None), "layers")
        # Spread over several devices by accelerate: the fused matrices would have to live on one.
        and len(set((getattr(model, "hf_device_map", None) or {"": 0}).values())) == 1
    )


@dataclass
class _Layer:
    ln1: torch.Tensor
    qkv: torch.Tensor
    o: torch.Tensor
    ln2: torch.Tensor
    gate_up: torch.Tensor
    down: torch.Tensor


# Where Linux tells the memory available, and the container's limit (cgroup v2).
_MEMINFO = Path("/proc/meminfo")
_CGROUP = Path("/sys/fs/cgroup")
# The packed copy may take at most this share of the memory available when the decoder is built.
_PACKED_SHARE_OF_AVAILABLE = 0.25
# The number of rows oneDNN lays the packed weights out for. Fixed, so the layout (and every rounding) is the
# same whatever batch size a run asks for; it works for any number of rows.
_PACKED_FOR_ROWS = 16


def _available_bytes() -> int:
    """Memory this process may still take: the kernel's estimate of available memory (free memory plus what it
    can reclaim), within the container's limit when one is set (cgroup v2); 0 when unknown (then nothing is
    packed)."""
    available = 0
    try:
        for line in _MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    if not available:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            return 0
    try:
        limit = (_CGROUP / "memory.max").read_text().strip()
        used = int((_CGROUP / "memory.current").read_text())
        if limit != "max":
            available = min(available, max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return available


def _packing_works() -> bool:
    """Whether this torch build packs and runs a linear through oneDNN (builds for other CPUs may lack it)."""
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(torch.ones(2, 2), _PACKED_FOR_ROWS)
        out = torch.ops.mkldnn._linear_pointwise(torch.ones(1, 2), packed, None, "none", [], "")
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    return bool(torch.equal(out, torch.full((1, 2), 2.0)))


class _Linears:
    """``x @ weight.T`` for the decoder's weight matrices: oneDNN on packed weights where that pays, else F.linear."""

    def __init__(self, weights: Sequence[torch.Tensor]) -> None:
        first = weights[0]
        extra = sum(w.numel() * w.element_size() for w in weights)
        self.packed = (
            first.device.type == "cpu"
            and first.dtype == torch.float32
            and torch.backends.mkldnn.is_available()
            and extra <= _PACKED_SHARE_OF_AVAILABLE * _available_bytes()
            and _packing_works()
        )

    def prepare(self, weight: torch.Tensor) -> torch.Tensor:
        if not self.packed:
            return weight
        return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), _PACKED_FOR_ROWS)

    def __call__(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if not self.packed:
            return F.linear(x, weight)
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, None, "none", [], "")


def _fuse(*linears: Any) -> torch.Tensor:
    """One weight matrix for several linear layers of the same input; the layers' weights become views into it."""
    fused = torch.cat([lin.weight.detach() for lin in linears], dim=0).contiguous()
    start = 0
    for lin in linears:
        rows = lin.weight.shape[0]
        lin.weight.data = fused[start : start + rows]
        start += rows
    return fused


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # As LlamaRMSNorm: the statistics in float32, the result in the model's dtype.
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


@dataclass
class Finished:
    """One prompt's answer: its position in the input, the new tokens (end of sequence excluded), why it ended."""

    index: int
    tokens: list[int]
    reason: str  # "stop" or "length"
    seconds: float


@dataclass
class _Row:
    index: int
    length: int  # tokens in the cache (prompt + generated so far, the last generated one not yet)
    tokens: list[int] = field(default_factory=list)
    seconds: float = 0.0
    generator: torch.Generator | None = None


class LlamaDecoder:
    """The forward pass of a LLaMA model over a static, slot-per-row key/value cache."""

    def __init__(self, model: Any) -> None:
        config = model.config
        inner = model.model
        self.n_heads = config.num_attention_heads
        self.n_kv = getattr(config, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.n_heads
        self.eps = float(config.rms_norm_eps)
        self.scale = self.head_dim**-0.5
        self.embed = inner.embed_tokens.weight
        self.norm = inner.norm.weight
        self.lm_head = model.lm_head.weight
        self.rotary = inner.rotary_emb
        self.dtype = self.embed.dtype
        self.device = self.embed.device
        # On the CPU, half-precision batched matmuls copy their strided operands (the cache slices) first: keys,
        # values and attention stay in float32 there, and only the weight matmuls run in the model's dtype.
        self.cache_dtype = torch.float32 if self.device.type == "cpu" else self.dtype
        layers = [
            _Layer(
                ln1=layer.input_layernorm.weight,
                qkv=_fuse(layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj),
                o=layer.self_attn.o_proj.weight,
                ln2=layer.post_attention_layernorm.weight,
                gate_up=_fuse(layer.mlp.gate_proj, layer.mlp.up_proj),
                down=layer.mlp.down_proj.weight,
            )
            for layer in inner.layers
        ]
        matrices = [self.lm_head] + [w for layer in layers for w in (layer.qkv, layer.o, layer.gate_up, layer.down)]
        self.linear = _Linears(matrices)
        self.lm_head = self.linear.prepare(self.lm_head)
        self.layers = [
            _Layer(
                ln1=layer.ln1,
                qkv=self.linear.prepare(layer.qkv),
                o=self.linear.prepare(layer.o),
                ln2=layer.ln2,
                gate_up=self.linear.prepare(layer.gate_up),
                down=self.linear.prepare(layer.down),
            )
            for layer in layers
        ]
        self._split = (self.n_heads * self.head_dim, self.n_kv * self.head_dim, self.n_kv * self.head_dim)

    def new_cache(self, slots: int, capacity: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        # Zeros, not empty: a masked-out column must hold a finite number (0 x -inf is NaN).
        shape = (slots, self.n_kv, capacity, self.head_dim)
        return [
            (
                torch.zeros(shape, dtype=self.cache_dtype, device=self.device),
                torch.zeros(shape, dtype=self.cache_dtype, device=self.device),
            )
            for _ in self.layers
        ]

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(_rms(hidden, self.norm, self.eps), self.lm_head).float()

    def prefill(self, ids: Sequence[int], cache: list[tuple[torch.Tensor, torch.Tensor]], slot: int) -> torch.Tensor:
        """Run one prompt, write its keys and values into ``slot``; the logits of its last position, shape [vocab]."""
        n = len(ids)
        tokens = torch.tensor(list(ids), dtype=torch.long, device=self.device)
        x = F.embedding(tokens, self.embed)[None]  # [1, n, hidden]
        cos, sin = self.rotary(x, torch.arange(n, device=self.device)[None])
        cos, sin = cos[:, None], sin[:, None]  # broadcast over heads
        for layer, (keys, values) in zip(self.layers, cache, strict=True):
            q, k, v = self.linear(_rms(x, layer.ln1, self.eps), layer.qkv).split(self._split, dim=-1)
            q = _rotate(q.view(1, n, self.n_heads, self.head_dim).transpose(1, 2), cos, sin)
            k = _rotate(k.view(1, n, self.n_kv, self.head_dim).transpose(1, 2), cos, sin)
            v = v.view(1, n, self.n_kv, self.head_dim).transpose(1, 2)
            keys[slot, :, :n] = k[0].to(self.cache_dtype)
            values[slot, :, :n] = v[0].to(self.cache_dtype)
            attn = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale, enable_gqa=True)
            x = x + self.linear(attn.transpose(1, 2).reshape(1, n, -1), layer.o)
            gate, up = self.linear(_rms(x, layer.ln2, self.eps), layer.gate_up).chunk(2, dim=-1)
            x = x + self.linear(F.silu(gate) * up, layer.down)
        return self._logits(x[0, -1])

    def step(
        self, tokens: torch.Tensor, positions: torch.Tensor, cache: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> torch.Tensor:
        """One new token for each of the first ``len(tokens)`` slots, at ``positions``; logits [rows, vocab]."""
        rows = tokens.shape[0]
        width = int(positions.max()) + 1
        x = F.embedding(tokens, self.embed)[:, None]  # [rows, 1, hidden]
        cos, sin = self.rotary(x, positions[:, None])  # [rows, 1, head_dim]: broadcast over heads
        # A row sees its own columns 0..position; columns beyond belong to nobody yet (or to a longer row). The
        # mask is added to the scores of every key head's query group: [rows x key heads, 1, width].
        hidden_cols = torch.arange(width, device=self.device)[None] > positions[:, None]
        bias = torch.zeros((rows, 1, width), dtype=torch.float32, device=self.device)
        bias.masked_fill_(hidden_cols[:, None], float("-inf"))
        bias = bias.repeat_interleave(self.n_kv, dim=0)
        row_ids = torch.arange(rows, device=self.device)
        group = self.n_heads // self.n_kv
        n_rotated = self.n_heads + self.n_kv
        for layer, (keys, values) in zip(self.layers, cache, strict=True):
            qkv = self.linear(_rms(x, layer.ln1, self.eps), layer.qkv)
            # Queries and keys side by side in qkv: one rotation for both.
            qk = qkv[..., : n_rotated * self.head_dim].view(rows, n_rotated, self.head_dim)
            qk = _rotate(qk, cos, sin)
            q, k = qk.split((self.n_heads, self.n_kv), dim=1)
            v = qkv[..., n_rotated * self.head_dim :].view(rows, self.n_kv, self.head_dim)
            keys[row_ids, :, positions] = k.to(self.cache_dtype)
            values[row_ids, :, positions] = v.to(self.cache_dtype)
            # Grouped-query attention without copying keys: query heads of one key head share a matmul.
            q = q.reshape(rows * self.n_kv, group, self.head_dim).to(self.cache_dtype)
            visible_keys = keys[:rows, :, :width].reshape(rows * self.n_kv, width, self.head_dim)
            scores = torch.add(bias, torch.bmm(q, visible_keys.transpose(1, 2)).float(), alpha=self.scale)
            weights = torch.softmax(scores, dim=-1).to(self.cache_dtype)
            visible_values = values[:rows, :, :width].reshape(rows * self.n_kv, width, self.head_dim)
            attn = torch.bmm(weights, visible_values)  # [rows x key heads, group, head_dim]
            x = x + self.linear(attn.reshape(rows, 1, -1).to(self.dtype), layer.o)
            gate, up = self.linear(_rms(x, layer.ln2, self.eps), layer.gate_up).chunk(2, dim=-1)
            x = x + self.linear(F.silu(gate) * up, layer.down)
        return self._logits(x[:, 0])


def _row_generator(seed: int, ids: Sequence[int], device: torch.device) -> torch.Generator:
    """A generator for one row: same seed and prompt, same draws, whatever else is in the batch."""
    digest = hashlib.sha256(f"{seed}:{','.join(map(str, ids))}".encode()).digest()
    generator = torch.Generator(device=device)
    generator.manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
    return generator


def _pick(logits: torch.Tensor, rows: Sequence[_Row], *, temperature: float, top_p: float) -> list[int]:
    """Greedy (temperature 0) or temperature + nucleus sampling as transformers does it, one generator per row."""
    if temperature <= 0:
        return logits.argmax(dim=-1).tolist()
    scaled = logits / temperature
    if top_p < 1.0:
        # Drop the least likely tokens whose total probability stays within 1 - top_p (always keep the top one).
        sorted_logits, sorted_ids = torch.sort(scaled, descending=False, dim=-1)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - top_p)
        remove[..., -1] = False
        scaled = scaled.masked_fill(remove.scatter(1, sorted_ids, remove), float("-inf"))
    probs = scaled.softmax(dim=-1)
    return [int(torch.multinomial(probs[i], 1, generator=row.generator)) for i, row in enumerate(rows)]


def generate(
    decoder: LlamaDecoder,
    prompts: Sequence[Sequence[int]],
    order: Sequence[int],
    *,
    slots: int,
    max_new_tokens: int,
    eos_token_ids: Sequence[int],
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
) -> Generator[Finished, None, None]:
    """Answer ``prompts`` (token ids) in the given order with ``slots`` rows at a time; yield each as it ends.

    Closing the iterator early stops the work (the rows in flight are dropped).
    """
    if not order:
        return
    eos = set(eos_token_ids)
    slots = max(1, min(slots, len(order)))
    capacity = max(len(prompts[i]) for i in order) + max_new_tokens
    cache = decoder.new_cache(slots, capacity)
    queue = deque(order)
    live: list[_Row] = []  # live[j] sits in cache slot j
    last = torch.zeros(slots, dtype=torch.long, device=decoder.device)  # each live row's newest token

    def done(row: _Row, token: int) -> Finished | None:
        """Record ``token`` for ``row``; the row's result when it has ended."""
        if token in eos:
            return Finished(row.index, row.tokens, "stop", row.seconds)
        row.tokens.append(token)
        if len(row.tokens) >= max_new_tokens:
            return Finished(row.index, row.tokens, "length", row.seconds)
        return None

    def pack(ended: list[int]) -> None:
        """Remove the rows in slots ``ended`` and move the last live rows into the holes."""
        for slot in sorted(ended, reverse=True):
            tail = len(live) - 1
            if slot != tail:
                moved = live[tail]
                for keys, values in cache:
                    keys[slot, :, : moved.length] = keys[tail, :, : moved.length]
                    values[slot, :, : moved.length] = values[tail, :, : moved.length]
                live[slot] = moved
                last[slot] = last[tail]
            live.pop()

    with torch.inference_mode():
        while queue or live:
            while queue and len(live) < slots:
                index = queue.popleft()
                ids = prompts[index]
                row = _Row(index=index, length=len(ids))
                if temperature > 0:
                    row.generator = _row_generator(seed, ids, decoder.device)
                if max_new_tokens <= 0:
                    yield Finished(index, [], "length", 0.0)
                    continue
                began = time.perf_counter()
                logits = decoder.prefill(ids, cache, len(live))
                (token,) = _pick(logits[None], [row], temperature=temperature, top_p=top_p)
                row.seconds += time.perf_counter() - began
                result = done(row, token)
                if result is not None:
                    yield result
                    continue
                last[len(live)] = token
                live.append(row)
            if not live:
                continue
            began = time.perf_counter()
            count = len(live)
            positions = torch.tensor([row.length for row in live], dtype=torch.long, device=decoder.device)
            logits = decoder.step(last[:count], positions, cache)
            picked = _pick(logits, live, temperature=temperature, top_p=top_p)
            share = (time.perf_counter() - began) / count
            ended: list[int] = []
            finished: list[Finished] = []
            for slot, (row, token) in enumerate(zip(live, picked, strict=True)):
                row.seconds += share
                row.length += 1
                result = done(row, token)
                if result is None:
                    last[slot] = token
                else:
                    ended.append(slot)
                    finished.append(result)
            pack(ended)
            yield from finished
