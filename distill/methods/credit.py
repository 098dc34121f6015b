"""Step-level credit, scored mode: imitate each state's best known action, avoid its known losses.

SFT on won episodes (expert iteration) credits a whole episode: every move of
a win is imitated, wasted ones included, and every move of a loss is ignored,
good ones included. Grid states repeat across episodes and rounds, so the
store knows more than that, per step (`distill.credit`): which action from a
state led to a known win and in how few moves, and which lost at once. This
method trains on exactly that:

1. the outcome table of the run's logged scored steps, this round's and
   `replay` rounds before it (deterministic transitions never go stale, so
   old rounds are as good as new ones), recorded in the store as knowledge
   of kind `outcomes`, one item per state with its source episodes;
2. the training states: every distinct state with a known win (targets: the
   actions with the best known return; several may tie) or a known loss;
3. a batch of them in the seeded order (`batch = 0`: all of them, one epoch
   per step);
4. loss per state = -log pi(best actions) when a win is known, plus
   `avoid` * -log(1 - pi(actions that lost at once)), at the job's T,
   averaged over the batch; recomputed with gradient through the trunk
   cache when only the top blocks train (`ConsolidationJob.candidate_log_pi`);
5. one AdamW step (the job shell).

What it never uses: the game's rules or a solver. Targets come from what the
policy itself did and saw; a state whose best action was never tried keeps
only what is known about it. The one exception is for benchmarks, and says
so: `labels = "solver"` takes the targets from the game's optimal moves
instead (`envs.grid.solver`, DAgger-style: at the states the policy visited,
plus along the solver's own play of the same maps on the run's own game).
That reads the game's internals, so it is the ceiling of what this loss can
learn in this budget, never the main job's method. Candidly, this is
supervised learning on the policy's own best known moves (expert iteration
at the step level, with trajectory stitching through repeated states), not
a policy gradient: at 135M parameters, measured, imitation of clean targets
moved the policy where GRPO's noisy episode-level signal did not (the
policy-gradient form of the same credit is `rl --baseline outcomes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium
import pandas as pd
import torch

from agent.policy import encode_chat
from agent.prompts import build_scored_messages
from distill import credit
from distill.candidates import ScoredState
from distill.data import check_replay, replay_steps, take_batch
from distill.errors import ConsolidationError
from distill.job import Batch, ConsolidationJob, MethodBase
from distill.validation import validation_env
from envs.grid.solver import optimal_moves_of_text

LABELS = ("outcomes", "solver")


@dataclass
class ScoredConfig:
    """Step-level credit's own settings."""

    batch: int = 0
    """Training states per step; 0: every state with a known outcome (one epoch per step)."""
    replay: int = -1
    """Earlier rounds whose steps join this round's: -1 every one, 0 none."""
    avoid: float = 1.0
    """Weight of pushing probability off the actions known to lose at once."""
    gamma: float = credit.GAMMA
    """Discount per move when backing known wins up: shorter known wins are preferred."""
    labels: str = "outcomes"
    """outcomes (the run's own outcome table) or solver (the game's optimal moves: a ceiling for benchmarks;
    grid games only)."""

    def __post_init__(self) -> None:
        if self.batch < 0:
            raise ConsolidationError(f"batch must be >= 0 (0 = every state), got {self.batch}")
        check_replay(self.replay)
        if self.labels not in LABELS:
            raise ConsolidationError(f"labels must be one of {', '.join(LABELS)}, got {self.labels!r}")
        if self.avoid < 0 or not 0 < self.gamma <= 1:
            raise ConsolidationError(
                f"avoid must be >= 0 and gamma in (0, 1], got {self.avoid}, {self.gamma}"
            )


@dataclass
class CreditState:
    """One training state: its logged candidates, the best known actions and the known losses."""

    scored: ScoredState
    best: list[int]
    avoid: list[int]


class ScoredMethod(MethodBase):
    """Step-level credit from the outcome table; see the module docstring."""

    Config = ScoredConfig

    def prepare(self, job: ConsolidationJob) -> None:
        # ---- 1. the outcome table of this round's and the replayed rounds' scored steps
        cfg = job.config
        steps = replay_steps(job.store, cfg.run, cfg.round, cfg.split, self.config.replay)
        steps = steps[steps["candidates"].notna()]
        if steps.empty:
            raise ConsolidationError(
                f"run {cfg.run!r} has no scored steps up to round {cfg.round}; "
                'play with action_mode = "scored"'
            )
        if self.config.labels == "solver":
            self.pool = solver_pool(job, steps)
            self.known_wins = len(self.pool)
            return
        table = credit.outcome_table(steps, self.config.gamma)
        record = job.record
        if record.outcomes_version_id is None:  # once per job, also when it resumes
            record.outcomes_version_id = job.store.record_outcomes(
                run_id=record.run_id, round_id=record.round_id, items=list(credit.outcome_items(table)),
                meta={"consolidation_id": record.consolidation_id, "gamma": self.config.gamma,
                      "rounds": sorted(int(r) for r in steps["round"].unique())},
            )  # fmt: skip
        # ---- 2. the states with something known about them
        first = steps.drop_duplicates("state")
        self.pool: list[CreditState] = []
        for row in first.itertuples(index=False):
            scored = ScoredState.from_step(row.state, row.prompt_ids, row.candidates)
            outcomes = table[row.state]
            index = {command: i for i, command in enumerate(scored.commands)}
            best = [index[a] for a in outcomes.best() if a in index]
            avoid = [index[a] for a in outcomes.losing() if a in index and index[a] not in best]
            if best or (avoid and self.config.avoid > 0):
                self.pool.append(CreditState(scored, best, avoid))
        self.known_wins = sum(bool(s.best) for s in self.pool)

    def sample(self, job: ConsolidationJob, step: int) -> Batch:
        # ---- 3. a batch of them (all of them with batch = 0)
        size = self.config.batch or len(self.pool)
        rows = take_batch(self.pool, size, step, job.config.seed) if self.pool else []
        info = {"states": len(rows), "pool": len(self.pool), "pool_known_wins": self.known_wins}
        return Batch(rows, totals={"states": len(rows)}, info=info)

    def loss(self, job: ConsolidationJob, rows: list[CreditState], batch: Batch) -> tuple[torch.Tensor, dict]:
        # ---- 4. imitate the best known actions, push off the known losses
        log_pi = job.candidate_log_pi([r.scored for r in rows], [job.config.temperature] * len(rows))
        terms, hits = [], 0
        for lp, row in zip(log_pi, rows, strict=True):
            term = lp.new_zeros(())
            if row.best:
                term = term - torch.logsumexp(lp[row.best], dim=0)
                hits += int(int(lp.argmax()) in row.best)
            if row.avoid and self.config.avoid > 0:
                p_bad = torch.logsumexp(lp[row.avoid], dim=0).exp().clamp(max=1 - 1e-6)
                term = term - self.config.avoid * torch.log1p(-p_bad)
            terms.append(term)
        loss = torch.stack(terms).sum() / batch.totals["states"]
        return loss, {"best_hit": hits / batch.totals["states"]}


def solver_pool(job: ConsolidationJob, steps: pd.DataFrame) -> list[CreditState]:
    """The ceiling's training states: the visited states and the solver's own play of the same train maps
    on the run's own game, each labelled with every optimal move (states where no win fits are left out)."""
    env_id, env_kwargs = validation_env(job)
    template = ScoredState.from_step(*steps[["state", "prompt_ids", "candidates"]].iloc[0])
    states = dict.fromkeys(steps["state"])
    env = gymnasium.make(env_id, split="train", **env_kwargs)
    for seed in sorted({int(s) for s in steps["seed"]}):
        obs, _info = env.reset(seed=seed)
        while best := optimal_moves_of_text(obs):
            states.setdefault(obs, None)
            obs, _r, terminated, truncated, _info = env.step(f"[{best[0]}]")
            if terminated or truncated:
                break
    env.close()
    index = {command: i for i, command in enumerate(template.commands)}
    pool = []
    for state in states:
        best = optimal_moves_of_text(state)
        if not best:
            continue
        prompt = encode_chat(job.tokenizer, build_scored_messages(state, template.commands))
        scored = ScoredState(
            state, prompt, template.commands, template.candidate_ids, 0, template.logprobs, 1.0
        )
        pool.append(CreditState(scored, [index[f"[{m}]"] for m in best], []))
    return pool
