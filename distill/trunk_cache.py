"""The cheap scored update: train the top blocks on the frozen trunk's cached output.

With `train_layers = k` the embedding and the bottom L - k blocks never change
during a job, nor across a loop's rounds that keep training the same top k.
Their output for a scored state (the prompt and the candidate branches, laid
out exactly as `agent.kv_forward` lays them) is therefore a constant. This
module computes it once per distinct state and keeps it, so every later step,
epoch and round runs only the top k blocks, the final norm and the output head
at the candidate positions, with gradient. A consolidation step on FrozenLake
recomputed all 30 blocks of every prompt before; `benchmarks/consolidation.py`
measures what this saves.

Two more savings, both exact:

- candidates that share their first tokens (every grid command begins with
  "[") have those tokens moved into the trunk: their log-probability adds the
  same constant to every candidate's score, which the softmax over candidates
  cancels;
- the output head runs once per distinct position (`branch_logprobs`).

Outputs equal `distill.candidates.candidate_log_pi` up to float rounding (the
tests hold them to 1e-4). The cache lives in this process's memory, keyed by
a fingerprint of the frozen weights and by the state's tokens, so the next
round of an `oel loop` (same process, same frozen trunk) starts with it warm;
a new process starts cold and fills it again, which changes no result.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch

from agent.kv_forward import Forward, Row, branch_logprobs, row_layout
from distill.candidates import ScoredState

MAX_CACHED_BYTES = 3 * 2**30
"""Upper bound on the cached hidden states of one process (least recently used go first)."""
_STORES: dict[str, OrderedDict[tuple, torch.Tensor]] = {}


def shared_prefix(candidates: Sequence[Sequence[int]]) -> int:
    """How many leading tokens every candidate shares (each keeps at least one token of its own)."""
    shortest = min(len(c) for c in candidates)
    n = 0
    while n < shortest - 1 and all(c[n] == candidates[0][n] for c in candidates):
        n += 1
    return n if len(candidates) > 1 else 0


def scored_row(prompt_ids: Sequence[int], candidate_ids: Sequence[Sequence[int]]) -> Row:
    """The state as one row: the prompt and the candidates' shared first tokens, then their own tokens."""
    n = shared_prefix(candidate_ids)
    return Row(
        trunk=list(prompt_ids) + list(candidate_ids[0][:n]), branches=[list(c[n:]) for c in candidate_ids]
    )


def _fingerprint(blocks: Sequence[torch.nn.Module], embed: torch.nn.Module) -> str:
    """A cheap identity of the frozen weights: a strided sample of every frozen tensor, hashed."""
    digest = hashlib.sha256()
    for module in (embed, *blocks):
        for name, tensor in module.state_dict().items():
            flat = tensor.detach().reshape(-1)
            digest.update(
                name.encode() + flat[:: max(1, flat.numel() // 4096)].float().cpu().numpy().tobytes()
            )
    return digest.hexdigest()[:16]


class TrunkCache:
    """Cached trunk outputs of scored states for a model whose top `trained_layers` blocks train."""

    def __init__(self, model: Any, trained_layers: int, pad_id: int, chunk: int = 8) -> None:
        body = model.base_model
        self.model, self.body, self.pad_id, self.chunk = model, body, pad_id, chunk
        self.split = len(body.layers) - trained_layers
        if not 0 < self.split < len(body.layers):
            raise ValueError(f"trained_layers must leave a frozen trunk, got {trained_layers}")
        self.store = _STORES.setdefault(
            _fingerprint(body.layers[: self.split], body.embed_tokens), OrderedDict()
        )
        self.hits = self.misses = 0

    def _run(self, blocks: Sequence[torch.nn.Module], hidden: torch.Tensor, layout: Any) -> torch.Tensor:
        device = hidden.device
        positions, mask = layout.position_ids.to(device), layout.mask.to(device)
        rotary = self.body.rotary_emb(hidden, position_ids=positions)
        for block in blocks:
            hidden = block(hidden, attention_mask=mask, position_ids=positions, position_embeddings=rotary)
        return hidden

    @torch.no_grad()
    def _fill(self, rows: list[Row], keys: list[tuple]) -> None:
        device = next(self.model.parameters()).device
        for start in range(0, len(rows), self.chunk):
            part = rows[start : start + self.chunk]
            layout = row_layout(part, self.pad_id)
            hidden = self.body.embed_tokens(layout.input_ids.to(device))
            hidden = self._run(self.body.layers[: self.split], hidden, layout)
            for i, (row, key) in enumerate(zip(part, keys[start : start + self.chunk], strict=True)):
                n = len(row.trunk) + sum(len(b) for b in row.branches)
                self.store[key] = hidden[i, :n].detach().clone()
        size = sum(t.numel() * t.element_size() for t in self.store.values())
        while size > MAX_CACHED_BYTES and len(self.store) > len(rows):
            _key, dropped = self.store.popitem(last=False)
            size -= dropped.numel() * dropped.element_size()

    def log_pi(self, states: Sequence[ScoredState], temperatures: Sequence[float]) -> list[torch.Tensor]:
        """Per state, log softmax(score / T) over its candidates [K], with gradient through the top blocks."""
        rows = [scored_row(s.prompt_ids, s.candidate_ids) for s in states]
        keys = [(tuple(r.trunk), tuple(map(tuple, r.branches))) for r in rows]
        missing = {k: r for k, r in zip(keys, rows, strict=True) if k not in self.store}
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        if missing:
            self._fill(list(missing.values()), list(missing))
        for key in keys:
            self.store.move_to_end(key)
        layout = row_layout(rows, self.pad_id)
        cached = [self.store[k] for k in keys]
        hidden = cached[0].new_zeros((len(rows), layout.input_ids.shape[1], cached[0].shape[-1]))
        for i, h in enumerate(cached):
            hidden[i, : h.shape[0]] = h
        hidden = self.body.norm(self._run(self.body.layers[self.split :], hidden, layout))
        forward = Forward(hidden, None, 0, layout.kv_valid.to(hidden.device), rows)
        scores = [
            torch.stack([lp.sum() for lp in branches]) for branches in branch_logprobs(self.model, forward)
        ]
        return [torch.log_softmax(s / t, dim=0) for s, t in zip(scores, temperatures, strict=True)]
