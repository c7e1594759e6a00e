"""Batched generator vs a plain per-prompt ``model.generate`` loop, on the same model, prompts and settings.

Run by hand (not a test):

    .venv/bin/python benchmarks/generation_bench.py [--prompts 32] [--batch-size 16] [--max-new-tokens 64]

Builds a ~20M-parameter LLaMA-architecture checkpoint with random weights (and
a BPE tokenizer trained on the eval-set instructions), then runs each phase in
its own child process so that each phase's peak resident memory (ru_maxrss) is
its own. Prints tokens per second of both and their ratio.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


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
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put({"kind": kind, "tokens": tokens, "seconds": seconds, "peak_mib": peak_kib / 1024})


def run_phase(kind: str, *args) -> dict:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_phase, args=(kind, *args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    args = parser.parse_args()

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
    print(f"{'':26}{'tokens':>8}{'seconds':>10}{'tokens/s':>11}{'peak RSS MiB':>14}")
    for name, r in (("per-prompt generate loop", loop), (f"batched (batch {args.batch_size})", batched)):
        print(
            f"{name:26}{r['tokens']:>8}{r['seconds']:>10.1f}{r['tokens'] / r['seconds']:>11.1f}{r['peak_mib']:>14.0f}"
        )
    ratio = (batched["tokens"] / batched["seconds"]) / (loop["tokens"] / loop["seconds"])
    print(f"speed-up: {ratio:.1f}x (goal: at least 4x)")
    print(json.dumps({"loop": loop, "batched": batched, "ratio": ratio, "parameters": params}))


if __name__ == "__main__":
    main()
