"""The default policy backend: a transformers causal LM on CPU or GPU, with prefix reuse and exact scoring.

Why it is shaped so:

- Prefill is what rollouts pay for on this CPU, and most of every prompt
  was computed before (the previous step's prompt, the shared role and
  knowledge text, a GRPO group's common first prompt). So every prompt's keys
  and values go into a `PrefixCache`, and a new prompt computes only what
  follows its longest cached prefix, in one batched forward whose rows have
  different prefixes (`agent.kv_forward`). Before that, a prefix every prompt
  of the batch shares is computed once, and identical prompts are computed
  once. `prefix_cache_mb=0` turns reuse off; the outputs are the same either
  way, up to float rounding (tested to 1e-4).
- Generation is our own decode loop on top of that forward (transformers'
  `generate` cannot start rows from different cached prefixes). It samples
  like `generate` does: logits / T, then top-k, then top-p; greedy is argmax.
  Rows that finished are dropped from the batch. Seeding uses a private
  generator, so a seeded call leaves the caller's random state alone.
- Log-probs are `log_softmax(logits / T)[token]` over the full vocabulary,
  before top-k/top-p (`agent.policy`), from raw logits; at T = 0 they are
  taken at T = 1. The output head runs only where a token is sampled or scored.
- `score` gives the exact log-likelihood (T = 1) of each candidate reply
  after a prompt, the candidates sharing the prompt's KV as branches of one
  forward (the scored action mode, `agent.forms.ScoredForm`); a long list of
  candidates is scored in waves of at most `branch_tokens` tokens per prompt,
  the prompt computed once.
- A model being trained is served through `from_model`; the cache notices
  any in-place weight update (parameters' version counters) and forgets
  everything, so an RL step never reuses keys of older weights.
- With `trunk_layers = k` (a run that trains only the top k blocks), `score`
  goes through `agent.trunk_cache`: the frozen blocks' output of every state
  is kept, so a state scored before costs only the top k blocks, and the
  learner finds the states it trains on already computed. Scores are the
  same up to float rounding; `prompt_computed` then counts the tokens run
  through the frozen blocks.
- SmolLM2 pads with its EOS token; each row is cut after its first EOS.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import torch

from agent.kv_forward import Row, branch_logprobs, run_rows, trunk_kv
from agent.model import load_model, resolve_model_path
from agent.policy import (
    Completion,
    Conversation,
    PolicyError,
    SamplingParams,
    ScoredPrompt,
    cut_at_eos,
    encode_chat,
    eos_token_ids,
)
from agent.prefix_cache import BLOCK, PrefixCache
from agent.trunk_cache import TrunkCache

DEFAULT_PREFIX_CACHE_MB = 1024
"""KV kept for reuse, in MiB (SmolLM2-135M in fp32: 46 KB per token, so about 23k tokens)."""
DEFAULT_BRANCH_TOKENS = 2048
"""Candidate tokens scored per prompt in one forward; more candidates are scored in further waves."""


def _chunks(lengths: list[int], limit: int) -> list[tuple[int, int]]:
    """Consecutive (start, end) ranges of `lengths` summing to at most `limit` each (at least one item)."""
    ranges, start, total = [], 0, 0
    for i, n in enumerate(lengths):
        if i > start and total + n > limit:
            ranges.append((start, i))
            start, total = i, 0
        total += n
    ranges.append((start, len(lengths)))
    return ranges


def sample_tokens(
    logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(token ids [B], their log-probs [B]) sampled from raw `logits` [B, V] as `generate` would."""
    logits = logits.float()
    if params.greedy:
        tokens = logits.argmax(-1)
        return tokens, torch.log_softmax(logits, -1).gather(1, tokens[:, None]).squeeze(1)
    scaled = logits / params.temperature
    filtered = scaled.clone()
    if params.top_k > 0 and params.top_k < filtered.shape[-1]:
        kth = filtered.topk(params.top_k, dim=-1).values[:, -1:]
        filtered[filtered < kth] = float("-inf")
    if params.top_p < 1.0:
        ordered, order = filtered.sort(dim=-1, descending=True)
        probs = ordered.softmax(-1)
        before = probs.cumsum(-1) - probs  # mass of the tokens ranked above each one
        drop = before > params.top_p
        drop[:, 0] = False
        filtered.scatter_(1, order, ordered.masked_fill(drop, float("-inf")))
    tokens = torch.multinomial(filtered.softmax(-1), 1, generator=generator).squeeze(1)
    return tokens, torch.log_softmax(scaled, -1).gather(1, tokens[:, None]).squeeze(1)


class HFPolicy:
    """A transformers causal LM served with batched prefill from a prefix cache and our own decode loop."""

    can_score = True

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        device: str | None = None,
        dtype: str | None = None,
        prefix_cache_mb: int = DEFAULT_PREFIX_CACHE_MB,
        trunk_layers: int | None = None,
        branch_tokens: int = DEFAULT_BRANCH_TOKENS,
    ) -> None:
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        default_dtype = "bfloat16" if self.device.startswith("cuda") else "float32"
        self.dtype = getattr(torch, dtype or default_dtype)
        self.path = resolve_model_path(model)
        self.model, self.tokenizer = load_model(self.path, dtype=self.dtype, device=self.device)
        self.name = f"hf:{self.path.name}"
        self.prefix_cache = PrefixCache(prefix_cache_mb * 2**20)
        self.trunk_layers = trunk_layers
        self.branch_tokens = branch_tokens
        self._setup()

    @classmethod
    def from_model(
        cls,
        model: Any,
        tokenizer: Any,
        name: str = "hf:in-memory",
        prefix_cache_mb: int = DEFAULT_PREFIX_CACHE_MB,
        trunk_layers: int | None = None,
    ) -> HFPolicy:
        """Serve an already loaded model without reloading it, e.g. a student being trained.

        The model is shared, not copied: later weight updates show up in the
        next call, and the prefix cache is dropped when they do.
        """
        policy = cls.__new__(cls)
        first = next(model.parameters())
        policy.device, policy.dtype = str(first.device), first.dtype
        policy.path, policy.model, policy.tokenizer, policy.name = None, model, tokenizer, name
        policy.prefix_cache = PrefixCache(prefix_cache_mb * 2**20)
        policy.trunk_layers = trunk_layers
        policy.branch_tokens = DEFAULT_BRANCH_TOKENS
        policy._setup()
        return policy

    def _setup(self) -> None:
        self.eos_ids = eos_token_ids(self.tokenizer, self.model.generation_config)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(self.eos_ids)
        eos = self.tokenizer.eos_token_id
        self.end_of_reply = eos if eos in self.eos_ids else min(self.eos_ids)
        config = self.model.config.get_text_config(decoder=True)
        full_attention = not getattr(config, "sliding_window", None) and not any(
            kind != "full_attention" for kind in (getattr(config, "layer_types", None) or [])
        )  # padded caches are exact for full attention only
        self._reuse = full_attention and self.prefix_cache.max_bytes > 0
        self._weights_seen = self._weights_version()
        self._trunk: TrunkCache | None = None
        self._trunk_seen: tuple[int, ...] = ()

    def _trunk_cache(self) -> TrunkCache:
        """The trunk cache of the current frozen blocks (a new one when they changed in place)."""
        n_blocks = len(self.model.base_model.layers)
        frozen = [
            p
            for block in self.model.base_model.layers[: n_blocks - self.trunk_layers]
            for p in block.parameters()
        ]
        seen = tuple(p._version for p in (*self.model.base_model.embed_tokens.parameters(), *frozen))
        if self._trunk is None or seen != self._trunk_seen:
            self._trunk, self._trunk_seen = TrunkCache(self.model, self.trunk_layers, self.pad_id), seen
        return self._trunk

    def _weights_version(self) -> tuple[int, ...]:
        return tuple(p._version for p in self.model.parameters())

    def reload(self, path: str | os.PathLike[str]) -> None:
        """Swap in the weights (and tokenizer) saved in another HF folder, e.g. a new checkpoint."""
        folder = resolve_model_path(path)
        model, tokenizer = load_model(folder, dtype=self.dtype, device=self.device)
        if tokenizer.get_vocab() != self.tokenizer.get_vocab():
            raise PolicyError(f"checkpoint {folder} has a different vocabulary than {self.path}")
        self.model, self.tokenizer, self.path = model, tokenizer, folder
        self.name = f"hf:{folder.name}"
        self.prefix_cache.clear()
        self._setup()

    # ------------------------------------------------------------------ prefill with reuse

    def _rows(
        self, prompts: list[list[int]], branches: list[list[list[int]]] | None = None
    ) -> tuple[list[Row], list[int]]:
        """One Row per prompt, starting after its longest cached prefix; and the tokens each computes."""
        if self._weights_version() != self._weights_seen:
            self.prefix_cache.clear()
            self._weights_seen = self._weights_version()
        rows, computed = [], []
        for i, prompt in enumerate(prompts):
            prefix, n = self.prefix_cache.longest(prompt, limit=len(prompt) - 1) if self._reuse else (None, 0)
            rows.append(Row(trunk=prompt[n:], prefix=prefix, branches=branches[i] if branches else []))
            computed.append(len(prompt) - n)
        return rows, computed

    def _warm_shared_prefix(self, prompts: list[list[int]]) -> int:
        """Compute the prefix all `prompts` share once, when a block or more of it is not cached yet.

        Return how many tokens that took (0 when nothing was run).
        """
        if not self._reuse or len(prompts) < 2:
            return 0
        shared = os.path.commonprefix(prompts)[: min(len(p) for p in prompts) - 1]
        cached, have = self.prefix_cache.longest(shared)
        if len(shared) - have < BLOCK:
            return 0
        forward = run_rows(self.model, [Row(trunk=shared[have:], prefix=cached)], self.pad_id)
        self.prefix_cache.put(shared, trunk_kv(forward, 0))
        return len(shared) - have

    def _forward(self, prompts: list[list[int]], branches: list[list[list[int]]] | None = None):
        """Prefill the unique (prompt, branches) pairs: (forward, each input's row, tokens computed)."""
        keys = [
            (tuple(p), tuple(tuple(c) for c in branches[i]) if branches else ())
            for i, p in enumerate(prompts)
        ]
        unique = list(dict.fromkeys(keys))
        where = [unique.index(k) for k in keys] if len(unique) < len(keys) else list(range(len(keys)))
        shared = self._warm_shared_prefix([list(p) for p, _b in unique])
        rows, computed = self._rows([list(p) for p, _b in unique], [[list(c) for c in b] for _p, b in unique])
        forward = run_rows(self.model, rows, self.pad_id)
        if self._reuse:
            for i, (prompt, _b) in enumerate(unique):
                self.prefix_cache.put(prompt, trunk_kv(forward, i))
        # the tokens of a prompt computed once count once, for its first copy; the shared prefix for the first
        counts = [0] * len(keys)
        seen: set[int] = set()
        for index, row in enumerate(where):
            if row not in seen:
                counts[index] = computed[row]
                seen.add(row)
        if counts:
            counts[0] += shared
        return forward, where, counts

    # ------------------------------------------------------------------ generation

    @torch.no_grad()
    def generate(self, conversations: Sequence[Conversation], params: SamplingParams) -> list[Completion]:
        """Sample one completion per conversation: one batched prefill, then one batched step per token."""
        if not conversations:
            return []
        start = time.perf_counter()
        prompts = [encode_chat(self.tokenizer, c) for c in conversations]
        forward, where, computed = self._forward(prompts)
        generator = None
        if params.seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(params.seed)
        index = torch.tensor(where, device=forward.hidden.device)
        ends = torch.tensor([len(forward.rows[w].trunk) - 1 for w in where], device=index.device)
        head = self.model.get_output_embeddings()
        logits = head(forward.hidden[index, ends])
        cache = forward.cache
        if where != list(
            range(len(forward.rows))
        ):  # identical prompts were computed once: one row each again
            cache.batch_select_indices(index)
        valid = forward.kv_valid[index]
        positions = torch.tensor(
            [forward.rows[w].start + len(forward.rows[w].trunk) for w in where], device=index.device
        )
        tokens: list[list[int]] = [[] for _ in prompts]
        logprobs: list[list[float]] = [[] for _ in prompts]
        active = list(range(len(prompts)))
        for step in range(params.max_new_tokens):
            chosen, logp = sample_tokens(logits, params, generator)
            still = []
            for slot, (token, lp) in enumerate(zip(chosen.tolist(), logp.tolist(), strict=True)):
                row = active[slot]
                tokens[row].append(token)
                logprobs[row].append(lp)
                if token not in self.eos_ids:
                    still.append(slot)
            if not still or step == params.max_new_tokens - 1:
                break
            if len(still) < len(active):
                keep = torch.tensor(still, device=index.device)
                cache.batch_select_indices(keep)
                valid, positions, chosen = valid[keep], positions[keep], chosen[keep]
                active = [active[s] for s in still]
            valid = torch.cat(
                [valid, torch.ones((len(active), 1), dtype=torch.bool, device=valid.device)], dim=1
            )
            out = self.model.base_model(
                input_ids=chosen[:, None], attention_mask=valid[:, None, None, :],
                position_ids=positions[:, None], past_key_values=cache, use_cache=True,
            )  # fmt: skip
            cache = out.past_key_values
            logits = head(out.last_hidden_state[:, -1])
            positions = positions + 1
        latency = time.perf_counter() - start
        completions = []
        for i, prompt in enumerate(prompts):
            ids, finish = cut_at_eos(tokens[i], self.eos_ids)
            completions.append(
                Completion(
                    text=self.tokenizer.decode(ids, skip_special_tokens=True),
                    token_ids=ids,
                    logprobs=logprobs[i][: len(ids)],
                    prompt_ids=prompt,
                    finish_reason=finish,
                    latency_s=latency,
                    prompt_computed=computed[i],
                )  # fmt: skip
            )
        return completions

    # ------------------------------------------------------------------ scoring

    def _score_in_waves(
        self, prompts: list[list[int]], branches: list[list[list[int]]]
    ) -> tuple[list[list[list[float]]], list[int]]:
        """Per prompt, each candidate's token log-probs, and the prompt tokens computed.

        A game that lists hundreds of commands (ScienceWorld) would make one
        forward of every branch at once; so each prompt's candidates are cut into
        chunks of at most `branch_tokens` tokens, and wave w scores every prompt's
        w-th chunk. The first wave computes the prompts, the later ones find them
        in the prefix cache and compute only their branches.
        """
        chunks = [_chunks([len(b) for b in cands], self.branch_tokens) for cands in branches]
        logprobs: list[list[list[float]]] = [[] for _ in prompts]
        computed = [0] * len(prompts)
        for wave in range(max(len(c) for c in chunks)):
            mine = [i for i, c in enumerate(chunks) if wave < len(c)]
            cut = [branches[i][slice(*chunks[i][wave])] for i in mine]
            forward, where, counts = self._forward([prompts[i] for i in mine], cut)
            per_row = branch_logprobs(self.model, forward)
            for k, i in enumerate(mine):
                logprobs[i] += [lp.tolist() for lp in per_row[where[k]]]
                computed[i] += counts[k]
        return logprobs, computed

    def candidate_ids(self, command: str) -> list[int]:
        """The reply tokens of a candidate command: its tokens and the end-of-turn token."""
        return list(self.tokenizer(command, add_special_tokens=False)["input_ids"]) + [self.end_of_reply]

    @torch.no_grad()
    def score(
        self, conversations: Sequence[Conversation], candidates: Sequence[Sequence[str]]
    ) -> list[ScoredPrompt]:
        """Per conversation, the exact log-likelihood (T = 1) of each candidate reply, in one forward."""
        if len(candidates) != len(conversations):
            raise PolicyError(
                f"score got {len(candidates)} candidate lists for {len(conversations)} conversations"
            )
        if any(not c for c in candidates):
            raise PolicyError("every conversation needs at least one candidate to score")
        if not conversations:
            return []
        start = time.perf_counter()
        prompts = [encode_chat(self.tokenizer, c) for c in conversations]
        branches = [[self.candidate_ids(c) for c in cands] for cands in candidates]
        if self.trunk_layers:
            trunk = self._trunk_cache()
            filled = trunk.filled_tokens
            logprobs = trunk.token_logprobs(prompts, branches)
            computed = [trunk.filled_tokens - filled] + [0] * (len(prompts) - 1)
        else:
            logprobs, computed = self._score_in_waves(prompts, branches)
        latency = time.perf_counter() - start
        return [
            ScoredPrompt(
                prompt_ids=prompt,
                candidate_ids=branches[i],
                token_logprobs=logprobs[i],
                prompt_computed=computed[i],
                latency_s=latency,
            )  # fmt: skip
            for i, prompt in enumerate(prompts)
        ]
