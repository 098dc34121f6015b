"""One batched forward over rows that each continue a cached prefix, with optional candidate branches.

This is what prefix reuse and exact candidate scoring are built on, for any
transformers decoder with full attention:

    row = prefix (cached KV, positions 0..P-1) + trunk (new tokens, causal) + branches

Each branch (a candidate command) sees the prefix, the whole trunk and its own
earlier tokens, never another branch, and its positions continue from the
trunk's end, so scoring K candidates costs one forward of the trunk plus the
candidates' own tokens instead of K forwards of the whole prompt ("tree
attention"). The rows of a batch have different prefix and trunk lengths:
their cached keys and values are right-padded to the longest prefix, their new
tokens to the longest row, and one boolean 4D attention mask says exactly
what each token may see, so padding never changes a result. Position ids are
explicit, so a token's rotary embedding is that of its real position, and a
key cached by an earlier forward is exactly the key this forward would have
computed: outputs equal a forward of the whole sequence from scratch up to
float rounding (the tests hold them to 1e-4 in fp32).

The same function serves inference (no gradient, prefixes from
`agent.prefix_cache`) and training (gradient, no prefix): scored-mode methods
in `distill` recompute candidate log-probabilities with exactly the code that
sampled them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class KVBlock:
    """Cached keys and values of a token prefix, every layer: [layers, kv_heads, n, head_dim] each."""

    keys: torch.Tensor
    values: torch.Tensor

    @property
    def length(self) -> int:
        return int(self.keys.shape[2])

    def head(self, n: int) -> KVBlock:
        """The first `n` positions (a view, no copy)."""
        return KVBlock(self.keys[:, :, :n], self.values[:, :, :n])


@dataclass
class Row:
    """One sequence of a batched forward: a cached prefix, new tokens, and candidate continuations."""

    trunk: list[int]
    """New tokens after the prefix, attended causally; at least one."""
    prefix: KVBlock | None = None
    """Cached KV of the tokens before the trunk (positions 0 .. prefix.length - 1)."""
    branches: list[list[int]] = field(default_factory=list)
    """Continuations after the trunk, each attending to prefix + trunk + itself only."""

    @property
    def start(self) -> int:
        """Position of the first trunk token."""
        return 0 if self.prefix is None else self.prefix.length


@dataclass
class Forward:
    """What `run_rows` computed: hidden states of the new tokens, and the cache to continue from."""

    hidden: torch.Tensor
    """[B, N] + [H]: the final hidden state of each new token (trunk, then branches, right-padded)."""
    cache: Any
    """The model's cache after the forward (prefixes right-padded to `prefix_width`), or None."""
    prefix_width: int
    """Padded prefix length: new token j of a row sits at cache position prefix_width + j."""
    kv_valid: torch.Tensor
    """[B, prefix_width + N] bool: the cache entries each row really has (no padding, no other branch)."""
    rows: list[Row]


def _empty_like_prefix(model: Any, device: Any, dtype: Any) -> KVBlock:
    config = model.config.get_text_config(decoder=True)
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    shape = (config.num_hidden_layers, kv_heads, 0, head_dim)
    return KVBlock(
        torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype)
    )


@dataclass
class Layout:
    """How `rows` sit in one padded batch: token ids, positions, the 4D mask, the valid cache entries."""

    input_ids: torch.Tensor
    """[B, N] new tokens (trunk, then branches), right-padded with the pad id."""
    position_ids: torch.Tensor
    """[B, N] each new token's real position (prefix length + its offset)."""
    mask: torch.Tensor
    """[B, 1, N, width + N] bool: what each new token may attend to (True = visible)."""
    kv_valid: torch.Tensor
    """[B, width + N] bool: the cache entries each row really has (no padding, no other branch)."""
    width: int
    """Padded prefix length."""


def row_layout(rows: list[Row], pad_id: int = 0) -> Layout:
    """Lay `rows` out as one batch (see the module docstring); shared by every forward over rows."""
    n_rows = len(rows)
    width = max(r.start for r in rows)
    layouts = []
    for r in rows:
        if not r.trunk:
            raise ValueError("every row needs at least one new trunk token")
        tokens, positions, owners = (
            list(r.trunk),
            list(range(r.start, r.start + len(r.trunk))),
            [-1] * len(r.trunk),
        )
        branch_start = r.start + len(r.trunk)
        for k, branch in enumerate(r.branches):
            tokens += branch
            positions += range(branch_start, branch_start + len(branch))
            owners += [k] * len(branch)
        layouts.append((tokens, positions, owners))
    n_new = max(len(t) for t, _p, _o in layouts)
    input_ids = torch.full((n_rows, n_new), pad_id, dtype=torch.long)
    position_ids = torch.zeros((n_rows, n_new), dtype=torch.long)
    mask = torch.zeros((n_rows, 1, n_new, width + n_new), dtype=torch.bool)
    kv_valid = torch.zeros((n_rows, width + n_new), dtype=torch.bool)
    for i, (row, (tokens, positions, owners)) in enumerate(zip(rows, layouts, strict=True)):
        n = len(tokens)
        input_ids[i, :n] = torch.tensor(tokens)
        position_ids[i, :n] = torch.tensor(positions)
        position_ids[i, n:] = positions[-1]
        owner = torch.tensor(owners)
        causal = torch.tril(torch.ones(n, n, dtype=torch.bool))
        visible = causal & ((owner[None, :] == -1) | (owner[None, :] == owner[:, None]))
        mask[i, 0, :n, : row.start] = True
        mask[i, 0, :n, width : width + n] = visible
        mask[i, 0, n:, width + n - 1] = True  # padding queries look at one real key (their output is unused)
        kv_valid[i, : row.start] = True
        kv_valid[i, width : width + len(row.trunk)] = True
    return Layout(input_ids, position_ids, mask, kv_valid, width)


def run_rows(model: Any, rows: list[Row], pad_id: int = 0) -> Forward:
    """One forward of the model body over `rows` (see the module docstring); gradients flow if enabled."""
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    n_rows = len(rows)
    layout = row_layout(rows, pad_id)
    width, input_ids, position_ids, mask, kv_valid = (
        layout.width, layout.input_ids, layout.position_ids, layout.mask, layout.kv_valid,
    )  # fmt: skip
    cache = None
    if width > 0:
        from transformers import DynamicCache

        empty = _empty_like_prefix(model, device, dtype)
        blocks = [r.prefix if r.prefix is not None else empty for r in rows]
        layers = blocks[0].keys.shape[0]
        keys = torch.zeros((layers, n_rows, *blocks[0].keys.shape[1:2], width, blocks[0].keys.shape[3]),
                           device=device, dtype=dtype)  # fmt: skip
        values = torch.zeros_like(keys)
        for i, block in enumerate(blocks):
            keys[:, i, :, : block.length] = block.keys
            values[:, i, :, : block.length] = block.values
        cache = DynamicCache(ddp_cache_data=[(keys[layer], values[layer]) for layer in range(layers)])
    out = model.base_model(
        input_ids=input_ids.to(device), attention_mask=mask.to(device), position_ids=position_ids.to(device),
        past_key_values=cache, use_cache=True,
    )  # fmt: skip
    return Forward(out.last_hidden_state, out.past_key_values, width, kv_valid.to(device), rows)


def trunk_kv(forward: Forward, i: int) -> KVBlock:
    """Row `i`'s prefix + trunk as one KV block (a copy), ready for the prefix cache."""
    row = forward.rows[i]
    keys, values = [], []
    for layer in forward.cache.layers:
        k, v = layer.keys[i], layer.values[i]
        span = slice(forward.prefix_width, forward.prefix_width + len(row.trunk))
        keys.append(torch.cat([k[:, : row.start], k[:, span]], dim=1))
        values.append(torch.cat([v[:, : row.start], v[:, span]], dim=1))
    return KVBlock(torch.stack(keys).detach(), torch.stack(values).detach())


def branch_logprobs(model: Any, forward: Forward, temperature: float = 1.0) -> list[list[torch.Tensor]]:
    """Per row, per branch, the log-probabilities [len(branch)] of the branch's own tokens.

    The first token of a branch is predicted from the trunk's last token, the
    others from the branch's previous token. The output head runs only at those
    positions, once per distinct position (every branch's first token is
    predicted from the same one), and the log-softmax is over the full
    vocabulary at `temperature`.
    """
    rows_at, cols_at, targets, owners = [], [], [], []
    for i, row in enumerate(forward.rows):
        offset = len(row.trunk)
        for k, branch in enumerate(row.branches):
            for t, token in enumerate(branch):
                rows_at.append(i)
                cols_at.append(len(row.trunk) - 1 if t == 0 else offset + t - 1)
                targets.append(token)
                owners.append((i, k))
            offset += len(branch)
    if not targets:
        return [[] for _ in forward.rows]
    device = forward.hidden.device
    positions = dict.fromkeys(zip(rows_at, cols_at, strict=True))
    unique = list(positions)
    at = {p: j for j, p in enumerate(unique)}
    hidden = forward.hidden[
        torch.tensor([r for r, _c in unique], device=device),
        torch.tensor([c for _r, c in unique], device=device),
    ]
    logits = model.get_output_embeddings()(hidden).float() / temperature
    which = torch.tensor([at[p] for p in zip(rows_at, cols_at, strict=True)], device=device)
    target = torch.tensor(targets, device=device)
    logp = logits[which, target] - torch.logsumexp(logits, dim=-1)[which]
    out: list[list[list[torch.Tensor]]] = [[[] for _ in row.branches] for row in forward.rows]
    for value, (i, k) in zip(logp, owners, strict=True):
        out[i][k].append(value)
    return [[torch.stack(tokens) for tokens in row] for row in out]
