"""Build tiny random-weight causal LM checkpoints at test time (no download, a second each).

A byte-level BPE tokenizer is trained with ``tokenizers`` on the eval-set
instructions, wrapped as a transformers fast tokenizer with end-of-sequence and
padding tokens and a small chat template, and saved next to random weights in
safetensors: exactly the directory an admin would upload.
"""

from __future__ import annotations

import json
import tarfile
import zipfile
from pathlib import Path

EVAL_SET_PATH = Path(__file__).resolve().parents[2] / "fixtures" / "self_instruct" / "user_oriented_instructions.jsonl"
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
# Architectures with a small config each: the generation tests build the first
# three; "qwen2" and "opt" stand for architectures the upload path never saw.
ARCHITECTURES = ("llama", "gpt2", "gpt_neox", "qwen2", "opt")


def eval_set_rows() -> list[dict]:
    with EVAL_SET_PATH.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def train_tokenizer(texts: list[str], vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "</s>", "<s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", bos_token="<s>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_config(architecture: str, tokenizer, *, hidden: int = 32, layers: int = 2, positions: int = 2048):
    from transformers import AutoConfig

    common = {
        "vocab_size": len(tokenizer),
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
    }
    if architecture in ("llama", "qwen2"):
        extra = dict(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers, num_attention_heads=4,
                     num_key_value_heads=2, max_position_embeddings=positions)  # fmt: skip
    elif architecture == "gpt2":
        extra = dict(n_embd=hidden, n_layer=layers, n_head=4, n_positions=positions)
    elif architecture == "gpt_neox":
        extra = dict(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers, num_attention_heads=4,
                     max_position_embeddings=positions)  # fmt: skip
    elif architecture == "opt":
        extra = dict(hidden_size=hidden, ffn_dim=2 * hidden, num_hidden_layers=layers, num_attention_heads=4,
                     max_position_embeddings=positions, word_embed_proj_dim=hidden)  # fmt: skip
    else:
        raise ValueError(f"no tiny config for {architecture}")
    return AutoConfig.for_model(architecture, **common, **extra)


def build_checkpoint(
    architecture: str,
    out_dir: Path,
    *,
    seed: int = 0,
    hidden: int = 32,
    layers: int = 2,
    positions: int = 2048,
    always_eos: bool = False,
) -> Path:
    """Save a random-weight ``architecture`` model and its tokenizer to ``out_dir`` (safetensors).

    ``always_eos`` (GPT-2 only) sets the final layer norm and the output row of
    the end-of-sequence token so that the model's first token is always EOS: a
    real checkpoint whose answers stop at once.
    """
    import torch
    from transformers import AutoModelForCausalLM

    texts = [row["instruction"] for row in eval_set_rows()]
    tokenizer = train_tokenizer(texts)
    config = tiny_config(architecture, tokenizer, hidden=hidden, layers=layers, positions=positions)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    if always_eos:
        if architecture != "gpt2":
            raise ValueError("always_eos is built for gpt2 only")
        with torch.no_grad():
            # Constant final hidden state (all ones); only the EOS row scores it.
            model.transformer.ln_f.weight.zero_()
            model.transformer.ln_f.bias.fill_(1.0)
            model.lm_head.weight.zero_()
            model.lm_head.weight[tokenizer.eos_token_id].fill_(1.0)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def pack_zip(model_dir: Path, archive: Path, *, folder: str | None = None) -> Path:
    """Zip ``model_dir``'s files, optionally under one top-level ``folder``."""
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(model_dir.rglob("*")):
            if path.is_file():
                name = str(path.relative_to(model_dir))
                zf.write(path, f"{folder}/{name}" if folder else name)
    return archive


def pack_tar(model_dir: Path, archive: Path, *, folder: str | None = None) -> Path:
    """tar (``.tar``) or gzip'd tar (``.tar.gz``/``.tgz``) of ``model_dir``, judged from the archive's name."""
    mode = "w:gz" if archive.name.endswith((".tar.gz", ".tgz")) else "w"
    with tarfile.open(archive, mode) as tf:
        for path in sorted(model_dir.rglob("*")):
            if path.is_file():
                name = str(path.relative_to(model_dir))
                tf.add(path, arcname=f"{folder}/{name}" if folder else name)
    return archive


def _rope_permute(weights, heads: int):
    """llama.cpp's layout of a query/key projection (what its converter writes; transformers undoes it)."""
    return (
        weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def build_gguf(
    out_path: Path,
    *,
    source_dir: Path | None = None,
    architecture: str = "llama",
    chat_template: str | None = CHAT_TEMPLATE,
    extra_metadata: dict[str, str] | None = None,
) -> Path:
    """Write a tiny LLaMA as a GGUF file (f32 tensors, a byte-level BPE vocabulary), as llama.cpp would.

    ``source_dir`` is a tiny llama checkpoint (built here when omitted) whose weights the file carries, so a
    test can compare the conversion with the original. ``architecture`` is written as ``general.architecture``
    (another value than "llama" gives a file that claims an architecture the weights are not).
    """
    import gguf
    import numpy as np
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer

    if source_dir is None:
        source_dir = build_checkpoint("llama", out_path.parent / f"{out_path.stem}-source")
    config = json.loads((source_dir / "config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(str(source_dir))
    tensors = load_file(str(source_dir / "model.safetensors"))
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    hidden = config["hidden_size"]

    writer = gguf.GGUFWriter(str(out_path), architecture)
    writer.add_name("tiny-llama")
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(hidden)
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_vocab_size(config["vocab_size"])
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    special = set(tokenizer.all_special_ids)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([token for token, _ in vocab])
    writer.add_token_types([3 if index in special else 1 for _, index in vocab])
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    merges = [m if isinstance(m, str) else " ".join(m) for m in backend["model"]["merges"]]
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    for key, value in (extra_metadata or {}).items():
        writer.add_string(key, value)

    names = {
        "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    }  # fmt: skip
    for name, value in tensors.items():
        value = np.ascontiguousarray(value, dtype=np.float32)
        if name == "model.embed_tokens.weight":
            target = "token_embd.weight"
        elif name == "model.norm.weight":
            target = "output_norm.weight"
        elif name == "lm_head.weight":
            target = "output.weight"
        else:
            _, _, layer, rest = name.split(".", 3)
            part = rest.removesuffix(".weight")
            target = f"blk.{layer}.{names[part]}.weight"
            if part == "self_attn.q_proj":
                value = _rope_permute(value, heads)
            elif part == "self_attn.k_proj":
                value = _rope_permute(value, kv_heads)
        writer.add_tensor(target, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out_path
