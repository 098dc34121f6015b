"""The frozen trunk computed once per scored state, for the policy that plays and the learner that trains.

A run that trains only the top k blocks (`train_layers = k`) never changes
the embedding nor the bottom L - k blocks: not during a consolidation, and not
across the rounds of a loop. Their output for a scored state (the prompt and
the candidate branches, laid out as `agent.kv_forward` lays them) is a
constant of the run. This cache computes it once per distinct state, in this
process's memory, and everything else reuses it:

- the policy (`HFPolicy(trunk_layers=k)`): a state seen before (a group's
  shared first state, a held-out map evaluated again after the next round, a
  validation task at every gate) costs only the top k blocks; a new one costs
  one full forward, as before;
- the learner (`distill.job`): every step, epoch and round runs the top k
  blocks with gradient on cached inputs; the states it trains on were mostly
  put in the cache when they were played, so it rarely fills anything.

Entries are keyed by a hash of every byte of the frozen weights and by the
row's tokens, so a checkpoint whose bottom differs, even in one weight, uses
other entries, and nothing is ever served for weights it was not computed with.

Within a batch, the prompts' longest common prefix (the chat template, the
role line, the knowledge) is computed once: through the bottom blocks when
filling, and through the top blocks for every forward, its keys and values
then shared by all rows. Candidates that share their first tokens (every grid
command begins with "[") have those tokens moved into the trunk; training
drops their log-probability, which adds the same constant to every candidate
and cancels in the softmax, and the policy computes it exactly. The output
head runs once per distinct position (`branch_logprobs`). Results equal
`distill.candidates.candidate_log_pi` and `HFPolicy.score`'s plain path up to
float rounding (the tests hold them to 1e-4, values and gradients).
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch

from agent.kv_forward import Forward, KVBlock, Row, branch_logprobs, row_layout

MAX_CACHED_BYTES = 3 * 2**30
"""Upper bound on the cached outputs of one frozen trunk (one weights fingerprint); least recently used go
first."""
MIN_SHARED = 8
"""Shortest common prefix worth computing once for a batch."""
_STORES: dict[str, OrderedDict[tuple, torch.Tensor]] = {}


def shared_prefix(candidates: Sequence[Sequence[int]]) -> int:
    """How many leading tokens every candidate shares (each keeps at least one token of its own)."""
    if len(candidates) < 2:
        return 0
    shortest = min(len(c) for c in candidates)
    n = 0
    while n < shortest - 1 and all(c[n] == candidates[0][n] for c in candidates):
        n += 1
    return n


def scored_row(prompt_ids: Sequence[int], candidate_ids: Sequence[Sequence[int]]) -> Row:
    """The state as one row: the prompt and the candidates' shared first tokens, then their own tokens."""
    n = shared_prefix(candidate_ids)
    return Row(
        trunk=list(prompt_ids) + list(candidate_ids[0][:n]), branches=[list(c[n:]) for c in candidate_ids]
    )


def _fingerprint(blocks: Sequence[torch.nn.Module], embed: torch.nn.Module) -> str:
    """The identity of the frozen trunk: its modules' reprs and every byte of every frozen tensor, hashed.

    The reprs tell a dense block from the same weights quantized as a 2:4 or a
    6:8 ternary student (`BitLinear` names its pattern), which compute other outputs.

    Every byte, not a sample: a sparse-ternary student's next checkpoint can
    differ from its last in a few flipped codes, which a strided sample misses,
    and it would then be served the other model's outputs. Hashing SmolLM2-135M's
    fp32 trunk takes about half a second, once per model.
    """
    digest = hashlib.sha256()
    for module in (embed, *blocks):
        digest.update(repr(module).encode())  # the layer types and their settings (a ternary pattern)
        for name, tensor in module.state_dict().items():
            digest.update(name.encode() + str(tensor.dtype).encode())
            digest.update(tensor.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


class _PrefixKV:
    """What a block's attention calls `past_key_values`: one shared prefix's keys and values per layer,
    put before every row's own (and, while `record` is set, the prefix's own being recorded)."""

    def __init__(self, record: bool = False) -> None:
        self.kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.record = record

    def update(self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any):
        if self.record:
            self.kv[layer_idx] = (keys, values)
            return keys, values
        past_k, past_v = self.kv[layer_idx]
        rows = keys.shape[0]
        return (
            torch.cat([past_k.expand(rows, -1, -1, -1), keys], dim=2),
            torch.cat([past_v.expand(rows, -1, -1, -1), values], dim=2),
        )


def _common_prefix(trunks: Sequence[Sequence[int]], keep: Sequence[int]) -> int:
    """Length of the trunks' common prefix, leaving row i at least keep[i] tokens; 0 when too short."""
    n = len(os.path.commonprefix([list(t) for t in trunks]))
    n = min(n, *(len(t) - k for t, k in zip(trunks, keep, strict=True)))
    return n if n >= MIN_SHARED else 0


class TrunkCache:
    """Cached trunk outputs of scored states for a model whose top `trained_layers` blocks may change."""

    def __init__(self, model: Any, trained_layers: int, pad_id: int, chunk: int = 32) -> None:
        body = model.base_model
        self.model, self.body, self.pad_id, self.chunk = model, body, pad_id, chunk
        self.split = len(body.layers) - trained_layers
        if not 0 < self.split < len(body.layers):
            raise ValueError(f"trained_layers must leave a frozen trunk, got {trained_layers}")
        self.store = _STORES.setdefault(
            _fingerprint(body.layers[: self.split], body.embed_tokens), OrderedDict()
        )
        self.hits = self.misses = 0
        self.filled_tokens = 0
        """Tokens run through the frozen blocks so far (what the cache did not save)."""

    # ------------------------------------------------------------------ running blocks

    def _blocks(self, blocks: Sequence[torch.nn.Module], hidden: torch.Tensor, layout: Any, past: Any) -> Any:
        device = hidden.device
        positions, mask = layout.position_ids.to(device), layout.mask.to(device)
        rotary = self.body.rotary_emb(hidden, position_ids=positions)
        for block in blocks:
            hidden = block(hidden, attention_mask=mask, position_ids=positions, position_embeddings=rotary,
                           past_key_values=past)  # fmt: skip
        return hidden

    def _with_prefix(
        self, blocks: Sequence[torch.nn.Module], prefix_input: torch.Tensor, rows: list[Row],
        hidden: torch.Tensor, width: int,
    ) -> tuple[torch.Tensor, Any]:  # fmt: skip
        """Run `blocks` over the rows' new tokens (`hidden`, their input to `blocks`) after a prefix of
        `width` tokens whose own input is `prefix_input` [width, H], run once for the whole batch; return the
        rows' outputs and the prefix's output [width, H] (None without a prefix)."""
        past, prefix_out = None, None
        if width:
            past = _PrefixKV(record=True)
            layout = row_layout([Row(trunk=[0] * width)], self.pad_id)
            prefix_out = self._blocks(blocks, prefix_input[None], layout, past)[0]
            past.record = False
        dummy = KVBlock(hidden.new_zeros((1, 1, width, 1)), hidden.new_zeros((1, 1, width, 1)))
        shifted = [Row(trunk=r.trunk, prefix=dummy if width else None, branches=r.branches) for r in rows]
        return self._blocks(blocks, hidden, row_layout(shifted, self.pad_id), past), prefix_out

    # ------------------------------------------------------------------ filling

    @torch.no_grad()
    def _fill(self, rows: list[Row], keys: list[tuple]) -> None:
        device = next(self.model.parameters()).device
        for start in range(0, len(rows), self.chunk):
            part, part_keys = rows[start : start + self.chunk], keys[start : start + self.chunk]
            width = _common_prefix([r.trunk for r in part], [1] * len(part))
            prefix_input = self.body.embed_tokens(
                torch.tensor(part[0].trunk[:width], dtype=torch.long, device=device)
            )
            suffixes = [Row(trunk=r.trunk[width:], branches=r.branches) for r in part]
            layout = row_layout(suffixes, self.pad_id)
            hidden = self.body.embed_tokens(layout.input_ids.to(device))
            bottom = self.body.layers[: self.split]
            hidden, prefix_hidden = self._with_prefix(bottom, prefix_input, suffixes, hidden, width)
            for i, (row, key) in enumerate(zip(suffixes, part_keys, strict=True)):
                n = len(row.trunk) + sum(len(b) for b in row.branches)
                own = hidden[i, :n]
                self.store[key] = torch.cat([prefix_hidden, own]) if width else own.clone()
                self.filled_tokens += n
            self.filled_tokens += width
        size = sum(t.numel() * t.element_size() for t in self.store.values())
        while size > MAX_CACHED_BYTES and len(self.store) > len(rows):
            _key, dropped = self.store.popitem(last=False)
            size -= dropped.numel() * dropped.element_size()

    def _cached(self, rows: list[Row]) -> list[torch.Tensor]:
        """The trunk outputs of `rows`, filling the missing ones; [tokens of the row, H] each."""
        keys = [(tuple(r.trunk), tuple(map(tuple, r.branches))) for r in rows]
        missing = {k: r for k, r in zip(keys, rows, strict=True) if k not in self.store}
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        if missing:
            self._fill(list(missing.values()), list(missing))
        for key in keys:
            self.store.move_to_end(key)
        return [self.store[k] for k in keys]

    # ------------------------------------------------------------------ the top blocks

    def top(self, rows: list[Row], keep: list[int]) -> tuple[Forward, int]:
        """The top blocks and final norm over `rows` (gradient if enabled), as a Forward over each row's
        tokens after the batch's common prefix, and that prefix's length; row i keeps keep[i] trunk tokens."""
        cached = self._cached(rows)
        width = _common_prefix([r.trunk for r in rows], keep)
        suffixes = [Row(trunk=r.trunk[width:], branches=r.branches) for r in rows]
        layout = row_layout(suffixes, self.pad_id)
        hidden = cached[0].new_zeros((len(rows), layout.input_ids.shape[1], cached[0].shape[-1]))
        for i, h in enumerate(cached):
            hidden[i, : h.shape[0] - width] = h[width:]
        out, _prefix = self._with_prefix(
            self.body.layers[self.split :], cached[0][:width], suffixes, hidden, width
        )
        out = self.body.norm(out)
        return Forward(out, None, 0, layout.kv_valid.to(out.device), suffixes), width

    def log_pi(self, states: Sequence[Any], temperatures: Sequence[float]) -> list[torch.Tensor]:
        """Per scored state (`prompt_ids`, `candidate_ids`), log softmax(score / T) over its candidates [K],
        with gradient through the top blocks; the candidates' shared first tokens are left out (they
        cancel)."""
        rows = [scored_row(s.prompt_ids, s.candidate_ids) for s in states]
        forward, _width = self.top(rows, [1] * len(rows))
        per_row = branch_logprobs(self.model, forward)
        scores = [torch.stack([lp.sum() for lp in branches]) for branches in per_row]
        return [torch.log_softmax(s / t, dim=0) for s, t in zip(scores, temperatures, strict=True)]

    @torch.no_grad()
    def token_logprobs(
        self, prompts: Sequence[Sequence[int]], candidates: Sequence[Sequence[Sequence[int]]]
    ) -> list[list[list[float]]]:
        """Per prompt, per candidate, the exact log-probability (T = 1) of each of its tokens, shared first
        tokens included: what `HFPolicy.score` returns, through the cache."""
        keys = [(tuple(p), tuple(map(tuple, c))) for p, c in zip(prompts, candidates, strict=True)]
        unique = list(dict.fromkeys(keys))  # a group's copies of one state run once
        if len(unique) < len(keys):
            out = dict(
                zip(unique, self.token_logprobs([k[0] for k in unique], [k[1] for k in unique]), strict=True)
            )
            return [out[k] for k in keys]
        rows = [scored_row(p, c) for p, c in zip(prompts, candidates, strict=True)]
        shared = [len(r.trunk) - len(p) for r, p in zip(rows, prompts, strict=True)]
        forward, width = self.top(rows, [n + 1 for n in shared])
        per_row = branch_logprobs(self.model, forward)
        head = self.model.get_output_embeddings()
        out = []
        for i, (row, n) in enumerate(zip(rows, shared, strict=True)):
            own = [lp.tolist() for lp in per_row[i]]
            if n:  # the shared tokens, predicted from the positions before them
                at = torch.arange(len(row.trunk) - n - 1, len(row.trunk) - 1, device=forward.hidden.device)
                logits = head(forward.hidden[i, at - width]).float()
                targets = torch.tensor(row.trunk[len(row.trunk) - n :], device=logits.device)
                first = (logits.gather(1, targets[:, None]).squeeze(1) - torch.logsumexp(logits, -1)).tolist()
                own = [first + lps for lps in own]
            out.append(own)
        return out
