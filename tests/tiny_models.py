"""The one builder of tiny random Llamas for fast tests (SmolLM2's architecture, a fraction of its size).

`tiny_llama` gives an in-memory model with a small vocabulary, for layer and
kernel tests; `save_tiny_llama` saves one with SmolLM2's real tokenizer (so
prompts, chat template and token ids are the real ones) into a folder that
every backend and the consolidation job load like any checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM


def tiny_llama(
    seed: int = 0, vocab_size: int = 96, intermediate_size: int = 128, **config: int
) -> LlamaForCausalLM:
    """A 2-layer Llama of width 64 with random weights, in eval mode."""
    torch.manual_seed(seed)
    defaults = {
        "vocab_size": vocab_size, "hidden_size": 64, "intermediate_size": intermediate_size,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": 64, "tie_word_embeddings": True,
    }  # fmt: skip
    return LlamaForCausalLM(LlamaConfig(**{**defaults, **config})).eval()


def save_tiny_llama(path: Path, tokenizer_from: Path, seed: int = 0) -> Path:
    """Save a tiny random Llama with the tokenizer of `tokenizer_from` (SmolLM2) to `path`; return it.

    Width 128 with head_dim 64 like SmolLM2 (vLLM's CPU attention rejects tiny heads).
    """
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_from), local_files_only=True)
    model = tiny_llama(
        seed, vocab_size=len(tokenizer), intermediate_size=256, hidden_size=128, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=8192, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path
