"""The online loop: rounds of collect -> extract -> consolidate -> evaluate -> deploy, resumable by phase.

A round r turns the deployed model M_r into M_{r+1} (docs/architecture.md, "the loop"):

1. **collect**: M_r plays the round's train seeds (or, in watch mode, the
   loop claims the episodes deployed agents wrote since the last round);
2. **extract**: the policy turns those trajectories into knowledge items,
   accumulated with the run's earlier ones into knowledge version K_r;
3. **consolidate**: `distill.consolidation.consolidate` moves K_r into the
   weights (OPCD by default; whatever method and student `[consolidate]` names);
   with a `[ternary]` table, a second job then distils M_{r+1} into a packed
   sparse-ternary student (`oel.ternary_round`);
4. **evaluate**: the held-out split, the same maps every time, under three
   conditions (`oel.conditions`): M_r alone, M_r with K_r in context, and M_{r+1}
   alone (and the ternary student, when there is one);
5. **deploy**: M_{r+1} (or the ternary student, as `[ternary]` says) becomes
   the run's deployed checkpoint.

Resumption is the design constraint. Each phase is a job keyed by (run,
round, phase) in the store's `phases` table (`memory.rounds`, which also
moves the round's status), and a complete phase keeps its result there;
running the same command again skips complete phases and restarts the one
that was cut off. Within a phase nothing is redone either:

- episodes are written whole, so collection and evaluation replay only the
  seeds the store does not have yet (no episode lost, none counted twice);
- consolidation resumes from its own last snapshot (`distill.checkpointing`);
- extraction reuses a knowledge version the round already stored.

Collection and evaluation play in this process, or, given a `RolloutPool`
(a run file's `[ray]`, `--ray`), on Ray rollout workers that write the same
episodes straight to the store; the phases count what is stored either way,
and the collect result records which worker played which seeds. With a pool,
consolidation runs as a Ray task with its own resource request
(`distill.ray_task`), retried by Ray and resumed from its snapshot; its
result records the node it ran on.

An evaluation condition is identified by (checkpoint, knowledge version)
rather than by round (`oel.evaluation`), so M_{r+1}'s held-out episodes
played at the end of round r also serve as round r+1's "no knowledge"
condition: that costs one evaluation per round less, and both rows report
the same episodes.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from agent.backends import make_policy
from agent.extractor import PolicyTextGenerator, make_extractor, policy_token_counter
from agent.model import resolve_model_path
from agent.policy import Policy, SamplingParams
from agent.ray_pool import RolloutPool
from agent.rollout import EpisodeTags, FinishedEpisode, RolloutConfig, RolloutSummary, run_rollouts
from distill.checkpointing import check_writable
from distill.consolidation import consolidate
from distill.errors import CheckpointError
from distill.ray_task import consolidate_on_ray
from memory import queries
from memory.knowledge.authored import add_authored_knowledge, read_items
from memory.knowledge.extract import extract_knowledge
from memory.replay import owed_seeds
from memory.rounds import PHASES
from memory.store import ExperienceStore
from oel.conditions import CONSOLIDATED, KNOWLEDGE, NONE, TERNARY
from oel.evaluation import EvalConfig, condition_figures, evaluate
from oel.run_config import LoopConfig, LoopConfigError


class LoopUI:
    """What the loop reports while it works; the default says nothing (tests), the CLI draws bars."""

    def phase_started(self, round_index: int, phase: str, total: int | None) -> None:
        """A phase begins; `total` is its unit count (episodes, steps) when known."""

    def advance(self, **fields: Any) -> None:
        """One unit of the current phase is done (an episode, a step, a batch)."""

    def phase_done(self, round_index: int, phase: str, result: dict[str, Any]) -> None:
        """A phase completed (now or in an earlier process: `result["resumed"]`)."""

    def waiting(self, have: int, need: int) -> None:
        """Watch mode: `have` unclaimed episodes did not fire the trigger (`need`); the loop polls again."""

    def round_done(self, summary: RoundSummary) -> None:
        """A round is complete."""


@dataclass
class RoundSummary:
    """One round's evidence, read back from the phases' recorded results."""

    index: int
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def seconds(self, phase: str) -> float | None:
        return self.results.get(phase, {}).get("seconds")

    def condition(self, name: str) -> dict[str, Any] | None:
        return self.results.get("evaluate", {}).get("conditions", {}).get(name)


class OnlineLoop:
    """Runs a `LoopConfig` against a store; `run()` does whole rounds, resuming where the store says."""

    def __init__(self, config: LoopConfig, store: ExperienceStore, ui: LoopUI | None = None,
                 pool: RolloutPool | None = None) -> None:  # fmt: skip
        try:  # before the store or a model is touched: the first save comes minutes later
            check_writable(Path(config.run.checkpoints) / config.run.name)
        except CheckpointError as exc:
            raise LoopConfigError(f"[run].checkpoints: {exc}") from None
        self.config = config
        self.store = store
        self.ui = ui or LoopUI()
        self.pool = pool
        self.run_id = store.ensure_run(config.run.name, asdict(config))
        self._policy: Policy | None = None
        self._policy_path: str | None = None
        self._watch = False
        if store.deployed_checkpoint(self.run_id) is None:
            start = str(resolve_model_path(config.run.model))
            store.deploy(self.run_id, store.checkpoint_for_path(start, run_id=self.run_id))

    # ------------------------------------------------------------------ driving rounds

    def run(self, rounds: int | None = None, watch: bool = False) -> list[RoundSummary]:
        """Complete rounds 0 .. rounds-1 (skipping those already done); return the summaries of all."""
        total = rounds if rounds is not None else self.config.run.rounds
        summaries = []
        for index in range(total):
            summaries.append(self.run_round(index, watch=watch))
        return summaries

    def run_round(self, index: int, watch: bool = False) -> RoundSummary:
        """Run (or finish, or just report) round `index`."""
        round_id = self.store.start_round(self.run_id, index)
        if self.store.round_status(round_id) == "done":
            return RoundSummary(index, self.store.phase_results(round_id))
        done = self.store.phase_results(round_id)
        self._watch = watch
        for phase in PHASES:
            if phase in done:
                self.ui.phase_done(index, phase, {**done[phase], "resumed": True})
                continue
            if phase == "collect" and watch:
                self._wait_for_episodes(index, round_id)
            done[phase] = self._run_phase(index, round_id, phase, done)
        self.store.finish_round(round_id)
        summary = RoundSummary(index, done)
        self.ui.round_done(summary)
        return summary

    def _run_phase(self, index: int, round_id: int, phase: str, done: dict[str, dict]) -> dict[str, Any]:
        phase_id = self.store.begin_phase(round_id, phase)
        started = time.perf_counter()
        try:
            result = getattr(self, f"_{phase}")(index, round_id, done)
        except BaseException as exc:  # an interrupt too: record it, then let it propagate
            self.store.fail_phase(phase_id, f"{type(exc).__name__}: {exc}"[:2000])
            raise
        result["seconds"] = round(time.perf_counter() - started, 2)
        self.store.complete_phase(phase_id, result)
        self.ui.phase_done(index, phase, result)
        return result

    def _wait_for_episodes(self, index: int, round_id: int) -> None:
        """Watch mode: block until the trigger fires (unless this round already claimed episodes)."""
        cfg, watch = self.config, self.config.watch
        if not self._round_episodes(index, "train").empty:
            return  # a claim happened before a crash: finish the round with what it has
        previous_end = self._previous_round_end(index)
        while True:
            have = self.store.count_unclaimed(self.run_id, cfg.run.env_id)
            if have >= watch.min_episodes:
                return
            if have and watch.every_minutes > 0 and time.time() - previous_end >= 60 * watch.every_minutes:
                return
            self.ui.waiting(have, watch.min_episodes)  # only once the trigger has not fired on `have`
            time.sleep(watch.poll_seconds)

    def _previous_round_end(self, index: int) -> float:
        ended = self.store.round_finished_at(self.run_id, index - 1)
        return ended if ended is not None else time.time()

    # ------------------------------------------------------------------ helpers

    def _policy_for(self, path: str) -> Policy:
        """The deployed-side policy on checkpoint `path`, loaded once and reloaded in place on change."""
        if self._policy is None:
            self._policy = make_policy(self.config.run.backend, path, **self.config.policy_options())
        elif self._policy_path != path:
            self._policy.reload(path)
        self._policy_path = path
        return self._policy

    def _round_episodes(self, index: int, split: str) -> pd.DataFrame:
        return queries.episodes(
            self.store, run=self.run_id, round=index, split=split, env=self.config.run.env_id
        )

    def _play(self, path: str, split: str, seeds: list[int], knowledge: str | None, tags: EpisodeTags,
              batch: int, sampling: SamplingParams) -> dict[str, list[int]]:  # fmt: skip
        """Play `seeds` on checkpoint `path` (the collection game: [run] options under [collect]'s); return
        which Ray worker played which seeds ({} in-process)."""
        cfg = self.config
        rollout = RolloutConfig(
            env_id=cfg.run.env_id,
            split=split,
            batch=batch,
            env_kwargs={**cfg.run.env_kwargs, **cfg.collect.env_kwargs},
            sampling=sampling,
            action_mode=cfg.run.action_mode,
        )

        def on_episode(_done: FinishedEpisode, summary: RolloutSummary) -> None:
            self.ui.advance(success=summary.success_rate)

        if self.pool is not None:  # workers read the deployment themselves: it is `path`
            return self.pool.play(
                path, rollout, tags, seeds, knowledge=knowledge or None, follow_run=self.run_id,
                on_episode=on_episode,
            ).workers  # fmt: skip
        run_rollouts(
            self._policy_for(path), self.store, rollout, knowledge=knowledge or None, tags=tags, seeds=seeds,
            on_episode=on_episode,
        )  # fmt: skip
        return {}

    # ------------------------------------------------------------------ 1. collect

    def _collect(self, index: int, round_id: int, done: dict[str, dict]) -> dict[str, Any]:
        cfg = self.config
        checkpoint_id, path = self.store.deployed_checkpoint(self.run_id)
        version = self.store.latest_knowledge_version(self.run_id) if cfg.collect.with_knowledge else None
        version_id, text = version if version else (None, None)
        workers: dict[str, list[int]] = {}
        if self._watch:
            claimed = self.store.claim_episodes(self.run_id, round_id, cfg.run.env_id)
            self.ui.phase_started(index, "collect", len(claimed))
        else:
            # each seed group_size times; what is stored counts
            missing = owed_seeds(cfg.collect.seeds(index), self._round_episodes(index, "train")["seed"])
            self.ui.phase_started(index, "collect", len(missing))
            if missing:
                tags = EpisodeTags(self.run_id, round_id, checkpoint_id, version_id)
                sampling = cfg.sampling
                if cfg.collect.temperature is not None:  # exploration has its own temperature
                    sampling = dataclasses.replace(sampling, temperature=cfg.collect.temperature)
                workers = self._play(path, "train", missing, text, tags, cfg.collect.batch, sampling)
        figures = condition_figures(self._round_episodes(index, "train"), per_seed=False)
        if not figures["episodes"]:
            raise RuntimeError(f"round {index} has no train episodes to learn from")
        result = {**figures, "checkpoint_id": checkpoint_id, "path": path, "knowledge_version_id": version_id}
        return {**result, "workers": workers} if workers else result

    # ------------------------------------------------------------------ 2. extract

    def _extract(self, index: int, round_id: int, done: dict[str, dict]) -> dict[str, Any]:
        settings = self.config.extract
        if settings.source == "none":
            return {"knowledge_version_id": None, "source": "none"}
        collected = done["collect"]
        if settings.source == "file":
            policy = self._policy_for(collected["path"])
            stored, _text, _created = add_authored_knowledge(
                self.store, self.run_id, read_items(settings.file), author=settings.author, round_id=round_id,
                count_tokens=policy_token_counter(policy), token_cap=settings.token_cap, source=settings.file,
            )  # fmt: skip
        else:
            version = self.store.latest_knowledge_version(
                self.run_id, kinds=("extracted",), round_id=round_id
            )
            stored = version[0] if version else None
        if stored is None:
            policy = self._policy_for(collected["path"])
            generator, extractor_checkpoint = PolicyTextGenerator(policy), collected["checkpoint_id"]
            if settings.source == "model":
                generator, extractor = make_extractor(
                    None, settings.extractor_model, settings.extractor_backend
                )
                extractor_checkpoint = None
                if settings.extractor_backend != "langchain":
                    extractor_checkpoint = self.store.checkpoint_for_path(
                        str(resolve_model_path(settings.extractor_model)), run_id=self.run_id
                    )
            ids = [int(i) for i in self._round_episodes(index, "train")["id"]]
            self.ui.phase_started(index, "extract", len(ids))
            result = extract_knowledge(
                self.store, generator, ids, run_id=self.run_id, round_id=round_id,
                extractor_checkpoint_id=extractor_checkpoint, count_tokens=policy_token_counter(policy),
                config=settings, on_batch=lambda n, total, counts: self.ui.advance(),
            )  # fmt: skip
            stored = result.version_id
        versions = queries.knowledge_versions(self.store, self.run_id)
        row = versions[versions["id"] == stored].iloc[0]
        meta = row["meta"] or {}
        return {
            "knowledge_version_id": int(stored), "items": int(row["n_items"]), "tokens": int(row["n_tokens"]),
            "added": meta.get("added"), "agreed": meta.get("agreed"), "rejected": meta.get("counts"),
            "source": settings.source,
        }  # fmt: skip

    # ------------------------------------------------------------------ 3. consolidate

    def _consolidate(self, index: int, round_id: int, done: dict[str, dict]) -> dict[str, Any]:
        cfg = self.config
        out = Path(cfg.run.checkpoints) / cfg.run.name / f"round-{index}"
        previous = self._previous_consolidation(index)
        start = done["collect"]["path"]
        if cfg.deploys == "ternary" and previous:  # the dense lineage goes on from the last dense model
            start = previous["path"]
        values = cfg.consolidate_values(index, start, done["extract"]["knowledge_version_id"], str(out))
        result = self._consolidation_job(index, "consolidate", values, out)
        if cfg.ternary:  # then distil M_r+1 into the ternary student (oel.ternary_round)
            student_out = out.with_name(f"{out.name}-ternary")
            student_start = previous.get("ternary", {}).get("path") or result["path"]
            values = cfg.ternary_values(index, result["path"], student_start, str(student_out))
            result["ternary"] = self._consolidation_job(index, "consolidate:ternary", values, student_out)
        return result

    def _consolidation_job(self, index: int, label: str, values: dict[str, Any], out: Path) -> dict[str, Any]:
        """Run (or resume, or find finished) one consolidation job; what the phase records of it."""
        self.ui.phase_started(index, label, values["steps"])
        losses: list[float] = []

        def on_step(metrics: dict[str, Any]) -> None:
            losses.append(metrics["loss"])
            self.ui.advance(loss=metrics["loss"])

        where: dict[str, str] = {}
        if self.pool is None:
            result = consolidate(values, self.store, on_step)
        else:  # a Ray task with its own resource request (distill.ray_task); it reports at the end
            values = {**values, "out": str(out.resolve())}
            remote = consolidate_on_ray(values, self.store.url, self.config.ray)
            result, losses, where = remote.result, remote.losses, {"node": remote.node}
        info, form = self.store.checkpoint_info(result.checkpoint_id), values.get("student") or "dense"
        return {
            "checkpoint_id": result.checkpoint_id, "path": info["path"], "form": form,
            "bits_per_weight": info["bits_per_weight"], "consolidation_id": result.consolidation_id,
            "method": values["method"], "steps": values["steps"], "resumed_after": result.start_step,
            "last_loss": losses[-1] if losses else None, **where,
        }  # fmt: skip

    def _previous_consolidation(self, index: int) -> dict[str, Any]:
        """What round index-1's consolidate phase recorded ({} for round 0)."""
        if index == 0:
            return {}
        return self.store.phase_results(self.store.start_round(self.run_id, index - 1)).get("consolidate", {})

    # ------------------------------------------------------------------ 4. evaluate

    def _evaluate(self, index: int, round_id: int, done: dict[str, dict]) -> dict[str, Any]:
        collected, extracted, consolidated = done["collect"], done["extract"], done["consolidate"]
        version_id = extracted["knowledge_version_id"]
        plans = {
            NONE: (collected["checkpoint_id"], collected["path"], None),
            KNOWLEDGE: (collected["checkpoint_id"], collected["path"], version_id),
            CONSOLIDATED: (consolidated["checkpoint_id"], consolidated["path"], None),
        }
        if "ternary" in consolidated:
            plans[TERNARY] = (consolidated["ternary"]["checkpoint_id"], consolidated["ternary"]["path"], None)
        conditions = {}
        for name in self.config.evaluate.conditions:
            if name not in plans or (name == KNOWLEDGE and version_id is None):
                continue  # no knowledge ([extract] source = "none") or no ternary student this round
            checkpoint_id, path, knowledge_id = plans[name]
            conditions[name] = self._evaluate_condition(
                index, round_id, name, checkpoint_id, path, knowledge_id
            )
        return {"conditions": conditions}

    def _evaluate_condition(self, index: int, round_id: int, name: str, checkpoint_id: int, path: str,
                            knowledge_id: int | None) -> dict[str, Any]:  # fmt: skip
        cfg, ev = self.config, self.config.evaluate
        eval_config = EvalConfig(
            env_id=cfg.run.env_id, env_kwargs=cfg.run.env_kwargs, episodes=ev.episodes, batch=ev.batch,
            seed=ev.seed, sampling=cfg.sampling, action_mode=cfg.run.action_mode,
        )  # fmt: skip
        return evaluate(
            lambda: self._policy_for(path), self.store, eval_config, run_id=self.run_id,
            checkpoint_id=checkpoint_id, knowledge_version_id=knowledge_id, round_id=round_id,
            on_start=lambda n: self.ui.phase_started(index, f"evaluate:{name}", n),
            on_episode=lambda done, summary: self.ui.advance(success=summary.success_rate),
            play=None if self.pool is None else self.pool.player(path),
        )  # fmt: skip

    # ------------------------------------------------------------------ 5. deploy

    def _deploy(self, index: int, round_id: int, done: dict[str, dict]) -> dict[str, Any]:
        consolidated = done["consolidate"]
        chosen = consolidated["ternary"] if self.config.deploys == "ternary" else consolidated
        checkpoint_id = chosen["checkpoint_id"]
        current = self.store.deployed_checkpoint(self.run_id)
        if current is None or current[0] != checkpoint_id:
            self.store.deploy(self.run_id, checkpoint_id, round_id)
        return {
            "checkpoint_id": checkpoint_id, "parent_checkpoint_id": done["collect"]["checkpoint_id"],
            "form": chosen.get("form", "dense"), "bits_per_weight": chosen.get("bits_per_weight"),
        }  # fmt: skip
