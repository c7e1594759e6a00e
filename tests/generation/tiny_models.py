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
