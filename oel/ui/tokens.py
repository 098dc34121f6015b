"""A reply's tokens coloured by log-probability, each with its value on hover.

Token ids are decoded one by one with the tokenizer of the checkpoint that
played them (its folder, loaded once and kept), else the embedded model's;
without either, the ids themselves are shown. The colour goes from red
(log p <= -5) through yellow to green (log p = 0). Every token's text is
escaped: a reply is model output and may hold anything.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any


@functools.lru_cache(maxsize=8)
def tokenizer_for(path: str | None) -> Any:
    """The tokenizer saved in `path`, else the embedded model's if it is cached, else None."""
    from transformers import AutoTokenizer

    candidates = [path] if path and Path(path, "tokenizer_config.json").is_file() else []
    from agent.model import DEFAULT_MODEL_NAME
    from envs.cache import cache_root

    candidates.append(str(cache_root() / "models" / DEFAULT_MODEL_NAME))
    for folder in candidates:
        if Path(folder, "tokenizer_config.json").is_file():
            return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return None


def colour(logprob: float) -> str:
    """HSL colour of a log-probability: 0 is green, -2.5 yellow, -5 and below red."""
    hue = 120 * max(0.0, min(1.0, 1 + logprob / 5))
    return f"hsl({hue:.0f}, 80%, 80%)"


def token_spans(ids: Sequence[int] | None, logprobs: Sequence[float] | None, tokenizer: Any) -> str:
    """HTML spans, one per token, background by log-prob, `title` with the value and the id."""
    if not ids:
        return '<span class="muted">(no token ids recorded)</span>'
    spans = []
    for index, token in enumerate(ids):
        text = tokenizer.decode([token]) if tokenizer is not None else f"<{token}>"
        lp = logprobs[index] if logprobs is not None and index < len(logprobs) else None
        style = f' style="background:{colour(lp)}"' if lp is not None else ""
        title = f"log p = {lp:.4f}, id {token}" if lp is not None else f"id {token}"
        spans.append(f'<span class="tok"{style} title="{escape(title)}">{escape(text)}</span>')
    return "".join(spans)
