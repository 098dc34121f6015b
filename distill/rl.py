"""RL consolidation on environment rewards: GRPO (or GMPO), alone or added to OPCD as KDRL does.

One optimizer step (or `rl_updates` of them) per freshly played batch:

1. the live student plays `groups` tasks, `group_size` episodes each from the
   same seed, WITHOUT knowledge, through the ordinary batched rollout code;
   every episode goes to the store like any other;
2. each episode's return is its reward; advantages are normalised within its
   group, and groups whose rewards are all equal are skipped and counted;
3. the training rows are every turn of every episode, with the exact prompt
   and completion token ids and the behaviour log-probs read back from the
   store (no re-tokenization), so the importance ratio starts at 1;
4. loss = GRPO's clipped token loss averaged over all tokens (or GMPO's
   geometric mean per episode), plus kl_beta times the k3 KL to the reference
   (the frozen starting checkpoint); for `opcd+rl`,
   rl_weight * RL + (1 - rl_weight) * OPCD, where the OPCD term is the top-k
   reverse KL to the knowledge-prompted teacher on the SAME sampled tokens;
5. AdamW, grad-norm clip; save now and then (the base class's loop).

Choices worth knowing, candidly:

- An episode of several turns is one trajectory with one reward: every token
  of every turn gets the episode's advantage. GMPO's "sequence" is the whole
  episode (all its turns' tokens), because that is what the advantage is for.
- With the default `rl_updates=1` the batch is used once, right after it was
  sampled, so the ratio is 1 up to float noise and the clip never binds: this
  is really REINFORCE with a group baseline. The clip matters only with
  `rl_updates > 1` (GRPO's mu), which reuses the batch for more steps.
- The sampler uses the deployed settings (T, top-p, top-k) while log-probs
  are over the full vocabulary at T (`agent.policy`'s definition), so the
  gradient ignores the truncation; at top-p 0.8 the bias is small and the
  trainer never needs the sampler's masks.
- Rewards are raw episode returns; zero-variance groups are dropped rather
  than resampled (DAPO resamples; on 2 CPU cores that doubles the cost).
- For `opcd+rl`, the OPCD term covers every episode, including those of
  skipped groups: it needs no reward, only the student's own samples.

Store hygiene: the RL episodes carry the run id but no round and no
checkpoint, and the policy name `rl:c<consolidation id>:s<step>`, so the
loop's round statistics never count them; their task seeds start at
RL_SEED_BASE, far from the loop's train seeds. A resumed run looks up each
step's episodes by that policy name first and plays only what is missing:
the stored ones were sampled by the very weights the resumed run has at that
step (it replays the same steps on the same data from the same snapshot), so
they are still on-policy, and no step is played twice.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import torch
from sqlalchemy import select

from agent.hf_policy import HFPolicy
from agent.policy import SamplingParams, encode_chat
from agent.prompts import build_messages
from agent.rollout import EpisodeTags, RolloutConfig, run_rollouts
from distill.data import pack
from distill.errors import ConsolidationError
from distill.losses import logprobs_at, opcd_token_kl, teacher_logprobs_at
from distill.opcd import Consolidator, response_hidden, response_logits
from distill.rl_losses import gmpo_loss, group_advantages, grpo_token_loss, k3_kl
from memory.codec import decode_ids, decode_logprobs
from memory.models import Episode, Step
from memory.store import ExperienceStore

RL_SEED_BASE = 1_000_000
"""RL task seeds are RL_SEED_BASE * (1 + seed) + i: far above the loop's train seeds (0, 1, 2, ...)."""
DEFAULT_CLIP = {"grpo": (0.2, 0.28), "gmpo": (0.4, 0.4)}
"""(eps_low, eps_high) when the config leaves them unset: DAPO's clip-higher; GMPO's log-space 0.4."""


def policy_name(consolidation_id: int, step: int) -> str:
    """The policy label of one RL step's episodes in the store."""
    return f"rl:c{consolidation_id}:s{step}"


@dataclass
class Turn:
    """One logged policy call of an RL episode: what the student saw, produced, and its log-probs."""

    state: str
    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float]


@dataclass
class PlayedEpisode:
    """An RL episode read back from the store."""

    episode_id: int
    seed: int
    reward: float
    won: bool
    turns: list[Turn]


def stored_episodes(store: ExperienceStore, run_id: int, policy: str) -> list[PlayedEpisode]:
    """The complete episodes of `run_id` played under `policy`, oldest first, with their logged turns."""
    stmt = (
        select(
            Episode.id,
            Episode.seed,
            Episode.total_return,
            Episode.won,
            Step.state,
            Step.prompt_ids,
            Step.completion_ids,
            Step.logprobs,
        )  # fmt: skip
        .select_from(Step.__table__.join(Episode.__table__, Episode.id == Step.episode_id))
        .where(Episode.run_id == run_id, Episode.policy == policy, Episode.status == "complete")
        .order_by(Episode.id, Step.idx)
    )
    episodes: dict[int, PlayedEpisode] = {}
    with store.engine.connect() as conn:
        for row in conn.execute(stmt):
            prompt, completion, logprobs = (
                decode_ids(row.prompt_ids), decode_ids(row.completion_ids), decode_logprobs(row.logprobs)
            )  # fmt: skip
            if not prompt or not completion or logprobs is None or len(logprobs) != len(completion):
                raise ConsolidationError(
                    f"episode {row.id} ({policy}) lacks token ids or log-probs; RL needs both"
                )
            episode = episodes.setdefault(
                row.id, PlayedEpisode(row.id, row.seed, float(row.total_return or 0.0), bool(row.won), [])
            )
            episode.turns.append(Turn(row.state, prompt, completion, logprobs))
    return list(episodes.values())


class RLConsolidator(Consolidator):
    """`rl` and `opcd+rl`: the base class's setup, loop and saving; its own step. See the module docstring."""

    def _new_job(self, run_id: int, steps: Any) -> dict[str, Any]:
        """The base job record, plus the environment RL plays (default: the one the round was played on)."""
        job = super()._new_job(run_id, steps)
        job["env_id"] = self.config.env_id or Counter(steps["env"]).most_common(1)[0][0]
        return job

    # ------------------------------------------------------------------ rollouts

    def task_seeds(self, step: int) -> list[int]:
        """The `groups` task seeds of step `step` (from 1)."""
        cfg = self.config
        first = RL_SEED_BASE * (1 + cfg.seed) + (step - 1) * cfg.groups
        return [first + g for g in range(cfg.groups)]

    def collect(self, step: int) -> tuple[list[list[PlayedEpisode]], int]:
        """Step `step`'s groups ([groups][group_size] episodes) and how many were reused from the store."""
        cfg = self.config
        name = policy_name(self.job["consolidation_id"], step)
        seeds = self.task_seeds(step)
        have = Counter(e.seed for e in stored_episodes(self.store, self.job["run_id"], name))
        missing = [s for s in seeds for _ in range(max(0, cfg.group_size - have[s]))]
        if missing:
            self.student.eval()
            rollout = RolloutConfig(
                env_id=self.job["env_id"], split="train", batch=len(missing), env_kwargs=dict(cfg.env_kwargs),
                sampling=SamplingParams(
                    temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k,
                    max_new_tokens=cfg.max_new_tokens, seed=cfg.seed * 1_000_003 + step,
                ),
            )  # fmt: skip
            policy = HFPolicy.from_model(self.student, self.tokenizer, name=name)
            run_rollouts(
                policy, self.store, rollout, tags=EpisodeTags(run_id=self.job["run_id"]), seeds=missing
            )
        by_seed: dict[int, list[PlayedEpisode]] = {s: [] for s in seeds}
        for episode in stored_episodes(self.store, self.job["run_id"], name):
            if episode.seed in by_seed and len(by_seed[episode.seed]) < cfg.group_size:
                by_seed[episode.seed].append(episode)
        reused = sum(min(have[s], cfg.group_size) for s in seeds)
        return [by_seed[s] for s in seeds], reused

    # ------------------------------------------------------------------ one step

    def _micro_batches(self, episodes: list[int], turns: list[list[Turn]]) -> list[list[int]]:
        """Episode indices split into runs of at most `micro_batch` turns (an episode is never split)."""
        batches: list[list[int]] = []
        size = 0
        for e in episodes:
            if not batches or size + len(turns[e]) > self.config.micro_batch:
                batches.append([])
                size = 0
            batches[-1].append(e)
            size += len(turns[e])
        return batches

    def train_step(self, step: int) -> dict[str, Any]:
        """Play (or reuse) step `step`'s groups, then take `rl_updates` optimizer steps on them."""
        cfg = self.config
        started = time.perf_counter()
        combined = cfg.method == "opcd+rl"
        eps_low, eps_high = (
            cfg.clip_low if cfg.clip_low is not None else DEFAULT_CLIP[cfg.objective][0],
            cfg.clip_high if cfg.clip_high is not None else DEFAULT_CLIP[cfg.objective][1],
        )

        # ---- 1. G episodes per task, played by the live student without knowledge (or found in the store)
        groups, reused = self.collect(step)
        flat = [e for group in groups for e in group]
        turns = [e.turns for e in flat]

        # ---- 2. group-normalised advantages; groups with equal rewards carry no signal: skip, count
        rewards = torch.tensor([[e.reward for e in group] for group in groups])
        advantages, informative = group_advantages(rewards)
        episode_adv = advantages.flatten().tolist()
        episode_rl = informative.repeat_interleave(cfg.group_size).tolist()
        rl_episodes = [i for i, keep in enumerate(episode_rl) if keep]
        trained = list(range(len(flat))) if combined else rl_episodes
        n_rl_tokens = sum(len(t.completion_ids) for e in rl_episodes for t in turns[e])
        n_all_tokens = sum(len(t.completion_ids) for e in trained for t in turns[e])

        # ---- 3. rl_updates passes over the batch, micro-batched by whole episodes, gradients accumulated
        totals: dict[str, float] = defaultdict(float)
        grad_norm = 0.0
        for _update in range(cfg.rl_updates if trained else 0):
            self.optimizer.zero_grad(set_to_none=True)
            self.student.train()
            for chunk in self._micro_batches(trained, turns):
                stats = self._accumulate(
                    chunk, turns, episode_adv, episode_rl, n_rl_tokens, n_all_tokens, len(rl_episodes),
                    eps_low, eps_high,
                )  # fmt: skip
                for key, value in stats.items():
                    totals[key] += value
            # ---- 4. one AdamW step per pass, gradient norm clipped
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.student.parameters(), cfg.grad_clip))
            self.optimizer.step()

        passes = max(1, cfg.rl_updates if trained else 1)
        metrics: dict[str, Any] = {
            "step": step,
            "loss": totals["loss"] / passes,
            "rl_loss": totals["rl_loss"] / passes,
            "reward_mean": float(rewards.mean()),
            "won_rate": sum(e.won for e in flat) / len(flat),
            "groups": len(groups),
            "skipped_groups": int((~informative).sum()),
            "episodes": len(flat),
            "reused_episodes": reused,
            "clip_fraction": totals["clipped"] / max(1, n_rl_tokens * passes),
            "tokens": n_all_tokens,
            "sampled_tokens": sum(len(t.completion_ids) for ts in turns for t in ts),
            "seconds": time.perf_counter() - started,
            "lr": self.optimizer.param_groups[0]["lr"],
            "grad_norm": grad_norm,
        }
        if cfg.kl_beta > 0:
            metrics["kl_ref"] = totals["kl_ref"] / max(1, n_rl_tokens * passes)
        if combined:
            metrics["kl"] = totals["kl"] / passes
        return metrics

    def _accumulate(
        self,
        chunk: list[int],
        turns: list[list[Turn]],
        episode_adv: list[float],
        episode_rl: list[bool],
        n_rl_tokens: int,
        n_all_tokens: int,
        n_rl_episodes: int,
        eps_low: float,
        eps_high: float,
    ) -> dict[str, float]:
        """Forward + backward of one micro-batch, each term pre-scaled so the sums are batch means."""
        cfg = self.config
        rows = [(e, t) for e in chunk for t in turns[e]]
        batch = pack(
            [t.prompt_ids for _, t in rows], [t.completion_ids for _, t in rows], self.pad_id, self.device
        )
        per_token = [len(t.completion_ids) for _, t in rows]
        episode_of = torch.tensor([e for (e, _), n in zip(rows, per_token, strict=True) for _ in range(n)])
        old_logp = torch.tensor([lp for _, t in rows for lp in t.logprobs], device=self.device)
        logits = response_logits(self.student, batch)
        logp = logprobs_at(logits, batch.targets[:, None], cfg.temperature).squeeze(-1)
        stats: dict[str, float] = defaultdict(float)
        loss = logits.new_zeros(())

        rl_mask = torch.tensor([episode_rl[e] for e in episode_of.tolist()], device=self.device)
        if n_rl_episodes and bool(rl_mask.any()):
            adv = torch.tensor([episode_adv[e] for e in episode_of.tolist()], device=self.device)[rl_mask]
            new, old = logp[rl_mask], old_logp[rl_mask]
            if cfg.objective == "grpo":
                token_loss, clipped = grpo_token_loss(new, old, adv, eps_low, eps_high)
                rl = token_loss.sum() / n_rl_tokens
            else:
                local = torch.unique(episode_of[rl_mask.cpu()], return_inverse=True)[1].to(self.device)
                seq_adv = torch.zeros(int(local.max()) + 1, device=self.device).index_put_((local,), adv)
                mean_loss, clipped = gmpo_loss(new, old, seq_adv, local, eps_low, eps_high)
                rl = mean_loss * seq_adv.shape[0] / n_rl_episodes
            if cfg.kl_beta > 0:
                with torch.no_grad():
                    ref_hidden = response_hidden(self.teacher, batch)[rl_mask]
                ref_logp = teacher_logprobs_at(
                    ref_hidden, self.teacher.get_output_embeddings(), batch.targets[rl_mask][:, None],
                    cfg.temperature, cfg.chunk,
                ).squeeze(-1)  # fmt: skip
                kl_ref = k3_kl(new, ref_logp)
                rl = rl + cfg.kl_beta * kl_ref.sum() / n_rl_tokens
                stats["kl_ref"] += float(kl_ref.detach().sum())
            stats["rl_loss"] += float(rl.detach())
            stats["clipped"] += int(clipped.sum())
            loss = loss + (cfg.rl_weight * rl if cfg.method == "opcd+rl" else rl)

        if cfg.method == "opcd+rl":
            teacher_prompts = [
                encode_chat(self.teacher_tokenizer, build_messages(t.state, self.knowledge)) for _, t in rows
            ]
            teacher_batch = pack(
                teacher_prompts, [t.completion_ids for _, t in rows], self.pad_id, self.device
            )
            with torch.no_grad():
                teacher_hidden = response_hidden(self.teacher, teacher_batch)
            token_kl = opcd_token_kl(
                logits, teacher_hidden, self.teacher.get_output_embeddings(), cfg.temperature, cfg.topk,
                cfg.chunk,
            )  # fmt: skip
            kl = token_kl.sum() / n_all_tokens
            stats["kl"] += float(kl.detach())
            loss = loss + (1.0 - cfg.rl_weight) * kl

        if loss.requires_grad:
            loss.backward()
        stats["loss"] += float(loss.detach())
        return stats
