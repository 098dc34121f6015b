"""Keys and values of recently seen prompts, found again by their longest common prefix.

On this CPU, prefill is what a rollout spends its time on, and most of every
prompt was computed before: each step's prompt repeats the previous step's
and adds a few lines, every slot's prompt starts with the same chat template,
role and knowledge text, and the episodes of a GRPO group start from the very
same first prompt. So after a forward, each prompt's KV is kept here, and
before the next one the longest prefix any kept prompt shares with the new
one is looked up; only the rest is computed (`agent.kv_forward`).

Lookup is by blocks of `BLOCK` tokens hashed as a chain (block k's key
hashes block k-1's key with its tokens), as vLLM's automatic prefix cache
does, so finding the longest shared block costs one dict probe per block;
the match is then extended token by token inside the next block, and checked
against the stored tokens (a hash collision cannot return a wrong prefix).
Entries are evicted least-recently-used once their KV exceeds `max_bytes`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from agent.kv_forward import KVBlock

BLOCK = 16
"""Tokens per hashed block."""


class PrefixCache:
    """An LRU map from token sequences to their KV, queried by longest common prefix."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[int, tuple[tuple[int, ...], KVBlock]] = OrderedDict()
        self._by_block: dict[int, int] = {}
        self._bytes = 0
        self._next_id = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        """Bytes of KV held now."""
        return self._bytes

    @staticmethod
    def _chain(ids: Sequence[int]) -> list[int]:
        keys, key = [], 0
        for start in range(0, len(ids) - len(ids) % BLOCK, BLOCK):
            key = hash((key, tuple(ids[start : start + BLOCK])))
            keys.append(key)
        return keys

    def longest(self, ids: Sequence[int], limit: int | None = None) -> tuple[KVBlock | None, int]:
        """(KV of the longest cached prefix of `ids`, its length), at most `limit` tokens; (None, 0): none."""
        limit = len(ids) if limit is None else min(limit, len(ids))
        best_entry, best_len = None, 0
        for depth, key in enumerate(self._chain(ids[:limit])):
            entry_id = self._by_block.get(key)
            if entry_id is None or entry_id not in self._entries:
                break
            best_entry, best_len = entry_id, (depth + 1) * BLOCK
        candidates = [best_entry] if best_entry is not None else list(self._entries)[-4:]
        found, found_len = None, 0
        for entry_id in candidates:
            stored, block = self._entries[entry_id]
            n = min(limit, len(stored), block.length)
            if tuple(ids[:best_len]) != stored[:best_len]:
                continue  # a hash collision: ignore the entry
            common = best_len
            while common < n and stored[common] == ids[common]:
                common += 1
            if common > found_len:
                found, found_len = entry_id, common
        if found is None or found_len == 0:
            return None, 0
        self._entries.move_to_end(found)
        return self._entries[found][1].head(found_len), found_len

    def put(self, ids: Sequence[int], block: KVBlock) -> None:
        """Keep `block` (the KV of all of `ids`) for later lookups; evict old entries past the budget."""
        if block.length != len(ids):
            raise ValueError(f"a KV block of {block.length} positions cannot hold {len(ids)} tokens")
        size = block.keys.element_size() * (block.keys.numel() + block.values.numel())
        if size > self.max_bytes:
            return
        entry_id = self._next_id
        self._next_id += 1
        self._entries[entry_id] = (tuple(ids), block)
        self._bytes += size
        for key in self._chain(ids):
            self._by_block[key] = entry_id
        while self._bytes > self.max_bytes:
            _old, (_ids, old) = self._entries.popitem(last=False)
            self._bytes -= old.keys.element_size() * (old.keys.numel() + old.values.numel())
        if len(self._by_block) > 8 * max(1, sum(len(i) for i, _b in self._entries.values()) // BLOCK):
            self._by_block = {k: e for k, e in self._by_block.items() if e in self._entries}

    def clear(self) -> None:
        """Forget everything (new weights make every cached key wrong)."""
        self._entries.clear()
        self._by_block.clear()
        self._bytes = 0
