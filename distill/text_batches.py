"""Model plumbing every text-mode method shares: packed token batches and logits at response positions.

`pack` lays out prompt + response right-padded and records which positions
predict a response token, so a student and a teacher whose prompts differ in
length (the teacher's holds the knowledge) produce their response rows in
the same order. `response_hidden` runs only the model body and gathers the
hidden states at those positions; `response_logits` applies the output head
to them alone, so a [batch x length x vocab] tensor is never made for the
prompt. Any causal LM whose `base_model` returns hidden states and whose
`get_output_embeddings()` maps them to logits fits: every HF decoder, and a
`distill.ternary` student converted from one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from distill.errors import ConsolidationError


@dataclass
class Packed:
    """Right-padded sequences and the positions whose logits predict response tokens."""

    input_ids: torch.Tensor
    """[B, L] prompt + response ids, right-padded."""
    attention_mask: torch.Tensor
    """[B, L] 1 on real tokens."""
    rows: torch.Tensor
    """[N] batch row of each predicting position."""
    cols: torch.Tensor
    """[N] sequence position of each predicting position (the token before the target)."""
    targets: torch.Tensor
    """[N] the response token each position predicts."""


def pack(prompts: list[list[int]], responses: list[list[int]], pad_id: int, device: str = "cpu") -> Packed:
    """Concatenate each prompt with its response, right-pad, and index the response-predicting positions."""
    if any(not r for r in responses) or any(not p for p in prompts):
        raise ConsolidationError("every prompt and response needs at least one token")
    width = max(len(p) + len(r) for p, r in zip(prompts, responses, strict=True))
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    rows, cols, targets = [], [], []
    for row, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
        seq = list(prompt) + list(response)
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
        rows += [row] * len(response)
        cols += range(len(prompt) - 1, len(seq) - 1)
        targets += response
    rows_t, cols_t, targets_t = (
        torch.tensor(v, dtype=torch.long, device=device) for v in (rows, cols, targets)
    )
    return Packed(ids.to(device), mask.to(device), rows_t, cols_t, targets_t)


def response_hidden(model: Any, batch: Packed) -> torch.Tensor:
    """The model body's hidden states at the response-predicting positions, [N, H]."""
    out = model.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
    return out.last_hidden_state[batch.rows, batch.cols]


def response_logits(model: Any, batch: Packed) -> torch.Tensor:
    """The model's logits at the response-predicting positions only, [N, V]."""
    return model.get_output_embeddings()(response_hidden(model, batch))
