"""Rollout workers on Ray: actors that build their own policy, play the seeds they are handed, and write
whole episodes straight to the store (docs/architecture.md, "the store is the queue").

Why it is shaped so:

- A worker (`RolloutWorker`, one Ray actor) is built from small settings: the
  store's URL, a backend name and its options. It opens its own store handle
  and loads its own policy, so nothing heavy is pickled and a worker on another
  machine needs only the same code, the checkpoint folders' paths and the
  database.
- The driver (`RolloutPool.play`) cuts the seeds into chunks of whole groups
  (the copies of one seed, a GRPO group, always go to one worker), keeps one
  chunk in flight per worker, and hands the next chunk to whichever finishes
  first. A chunk is played by the same `agent.rollout.run_rollouts` as in one
  process, so every episode is written whole, in one transaction.
- Replays are idempotent. Before playing, a worker counts the episodes the
  store already holds with exactly the tags it would write (run, round,
  checkpoint, knowledge version, env, split, action mode) and plays only what
  is missing. So a chunk that Ray retries after its worker died, or that the
  driver hands to another worker, skips what the dead worker had written, and
  a half-played episode was never written at all.
- Faults are Ray's: actors are created with `max_restarts` and
  `max_task_retries`, so a killed worker is restarted and its chunk retried.
  A chunk whose worker is gone for good goes back to the queue for the others.
  Afterwards the driver checks that the store holds every seed it handed out.
- Weights travel as folders. A chunk names the checkpoint folder to play, or
  (`follow_run`) tells the worker to read the run's newest deployment before
  the chunk and reload when it changed (the disk weight-sync pattern: nobody
  streams weights, `oel play --follow` does the same in one process).
- SQLite is refused: workers are separate processes, possibly on separate
  machines, and one SQLite file is not a store they can share.

Ray is an optional extra (`pip install 'oel[ray]'`), imported only here and only
when a pool is made.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.backends import make_policy
from agent.policy import Policy
from agent.rollout import EpisodeTags, FinishedEpisode, RolloutConfig, RolloutSummary, run_rollouts
from memory import queries
from memory.replay import owed_seeds, played_modes
from memory.store import ExperienceStore

OnEpisode = Callable[[FinishedEpisode, RolloutSummary], None]
Player = Callable[[RolloutConfig, EpisodeTags, str | None, Sequence[int], OnEpisode | None], object]
"""play(rollout, tags, knowledge, seeds, on_episode): plays seeds somewhere and stores their episodes."""

LOCAL_OBJECT_STORE_MB = 200
"""Object store of a cluster started in-process (`address = "local"`); chunks and results are small."""


class RayError(RuntimeError):
    """A Ray run that cannot go on: no Ray installed, a SQLite store, no worker left, a worker's error."""


@dataclass
class RaySettings:
    """Where and how rollout workers run (a run file's `[ray]`, or `--ray ADDRESS --workers N`)."""

    address: str | None = None
    """Cluster address: "local" (start a cluster in this process), "auto" (the cluster `ray start` made
    on this machine), "ray://HOST:10001" (Ray client) or HOST:6379; None: no Ray, all in one process."""
    workers: int = 2
    """Rollout worker actors."""
    num_cpus: float = 1.0
    """CPUs each worker asks Ray for (Ray also sets the worker's thread count from it)."""
    num_gpus: float = 0.0
    """GPUs each worker asks Ray for (a fraction shares one GPU)."""
    max_restarts: int = 3
    """How often Ray restarts a worker that died."""
    max_task_retries: int = 3
    """How often Ray retries a chunk whose worker died while playing it, and the consolidation task
    (`distill.ray_task`) whose process died."""
    consolidate_num_cpus: float = 1.0
    """CPUs the loop's consolidation task asks Ray for (besides what the workers hold)."""
    consolidate_num_gpus: float = 0.0
    """GPUs the consolidation task asks Ray for: 1 on a cluster with a GPU to spare; 0 trains on CPU."""

    @property
    def enabled(self) -> bool:
        return self.address is not None


@dataclass(frozen=True)
class PolicySpec:
    """What a worker builds its policy from: a backend name and its keyword options (small, picklable)."""

    backend: str = "hf"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Chunk:
    """Seeds for one worker call, with everything needed to play and tag them."""

    rollout: RolloutConfig
    tags: EpisodeTags
    model: str | None
    knowledge: str | None
    seeds: list[int]
    follow_run: int | None = None
    """Play the run's deployed checkpoint (read before the chunk), not `model` / `tags.checkpoint_id`."""


@dataclass
class ChunkResult:
    """What one worker call did."""

    worker: str
    seeds: list[int]
    """The seeds played now (one entry per episode)."""
    skipped: int
    """Episodes of the chunk the store already held (a retried chunk)."""
    checkpoint_id: int | None
    summary: RolloutSummary


@dataclass
class PoolResult:
    """What `RolloutPool.play` did: the merged summary and which worker played which seeds."""

    summary: RolloutSummary = field(default_factory=RolloutSummary)
    workers: dict[str, list[int]] = field(default_factory=dict)
    """Worker label -> the seeds it played (one entry per episode, in play order)."""


def missing_seeds(store: ExperienceStore, chunk: Chunk) -> tuple[list[int], int]:
    """(the chunk's seeds the store lacks, with multiplicity; how many it already holds)."""
    tags = dataclasses.asdict(chunk.tags)
    if chunk.follow_run is not None:
        tags.pop("checkpoint_id")  # a seed played on an earlier deployment is still played
    rollout = chunk.rollout
    counts = queries.seed_counts(
        store, env_id=rollout.env_id, split=rollout.split, action_modes=played_modes(rollout.action_mode),
        **tags,
    )  # fmt: skip
    todo = owed_seeds(chunk.seeds, Counter(counts).elements())
    return todo, len(chunk.seeds) - len(todo)


class RolloutWorker:
    """One rollout worker (a Ray actor): its own store handle and policy; plays chunks of seeds."""

    def __init__(self, name: str, db_url: str, spec: PolicySpec) -> None:
        self.name = name
        self.spec = spec
        self.store = ExperienceStore.open(db_url)
        self.policy: Policy | None = None
        self.model: str | None = None

    def label(self) -> str:
        """The worker's name and node: worker-N@NODE (the first 8 characters of the Ray node id)."""
        import ray

        return f"{self.name}@{ray.get_runtime_context().get_node_id()[:8]}"

    def pid(self) -> int:
        return os.getpid()

    def _policy_on(self, model: str | None) -> Policy:
        if self.policy is None:
            self.policy = make_policy(self.spec.backend, model, **self.spec.options)
        elif model != self.model:
            self.policy.reload(model)
        self.model = model
        return self.policy

    def play(self, chunk: Chunk) -> ChunkResult:
        """Play the chunk's seeds the store lacks and write each episode whole."""
        tags, model = chunk.tags, chunk.model
        if chunk.follow_run is not None:
            deployed = self.store.deployed_checkpoint(chunk.follow_run)
            if deployed is not None:
                tags, model = dataclasses.replace(tags, checkpoint_id=deployed[0]), deployed[1]
        todo, skipped = missing_seeds(self.store, dataclasses.replace(chunk, tags=tags))
        summary = RolloutSummary()
        if todo:
            summary = run_rollouts(
                self._policy_on(model), self.store, chunk.rollout, knowledge=chunk.knowledge, tags=tags,
                seeds=todo,
            )  # fmt: skip
        return ChunkResult(self.label(), todo, skipped, tags.checkpoint_id, summary)


def chunks_of(seeds: Sequence[int], size: int) -> list[list[int]]:
    """Cut seeds into chunks of about `size` episodes; all copies of a seed (a group) share one chunk."""
    groups = Counter(seeds)
    chunks: list[list[int]] = []
    current: list[int] = []
    for seed in dict.fromkeys(seeds):  # first-seen order
        if current and len(current) + groups[seed] > size:
            chunks.append(current)
            current = []
        current += [seed] * groups[seed]
    if current:
        chunks.append(current)
    return chunks


def seed_ranges(seeds: Sequence[int]) -> str:
    """Seeds as ranges for a screen, e.g. [0, 0, 1, 1, 2, 2, 7] -> "0-2, 7 (7 episodes)"."""
    unique = sorted(set(seeds))
    parts: list[str] = []
    start = previous = None
    for seed in [*unique, None]:
        if previous is not None and seed != previous + 1:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
            start = None
        if start is None:
            start = seed
        previous = seed
    return f"{', '.join(parts)} ({len(seeds)} episode{'' if len(seeds) == 1 else 's'})"


def merge(total: RolloutSummary, part: RolloutSummary) -> None:
    """Add a worker's summary into the driver's (seconds: the sum of the workers' times)."""
    total.episodes += part.episodes
    for name in ("seconds", "policy_calls", "env_steps", "generated_tokens", "prompt_tokens",
                 "prompt_computed", "scored_tokens"):  # fmt: skip
        setattr(total, name, getattr(total, name) + getattr(part, name))


class RolloutPool:
    """The driver's side: a set of rollout worker actors on a Ray cluster, and the seed hand-out."""

    def __init__(self, settings: RaySettings, store: ExperienceStore, spec: PolicySpec | None = None) -> None:
        if store.dialect == "sqlite":
            raise RayError(
                f"Ray workers need a PostgreSQL store, not SQLite ({store.where()}): pass "
                "--db postgresql+psycopg://USER@HOST:5432/DB (or set [run].db or $OEL_DB_URL)"
            )
        if settings.workers < 1:
            raise RayError(f"a Ray pool needs at least one worker, got workers = {settings.workers}")
        try:
            import ray
        except ImportError:
            raise RayError("Ray is not installed: pip install 'oel[ray]'") from None
        self.ray = ray
        self.settings = settings
        self.store = store
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            self._init_ray(settings.address)
        actor = ray.remote(RolloutWorker).options(
            num_cpus=settings.num_cpus, num_gpus=settings.num_gpus, max_restarts=settings.max_restarts,
            max_task_retries=settings.max_task_retries,
        )  # fmt: skip
        spec = spec or PolicySpec()
        self.workers = [actor.remote(f"worker-{i}", store.url, spec) for i in range(settings.workers)]

    def _init_ray(self, address: str | None) -> None:
        try:
            if address == "local":
                self.ray.init(
                    include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE_MB << 20,
                    log_to_driver=False,
                )  # fmt: skip
            else:
                self.ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise RayError(f"cannot reach the Ray cluster at {address!r}: {first}") from None

    def play(
        self,
        model: str | None,
        rollout: RolloutConfig,
        tags: EpisodeTags,
        seeds: Sequence[int],
        *,
        knowledge: str | None = None,
        follow_run: int | None = None,
        on_episode: OnEpisode | None = None,
    ) -> PoolResult:
        """Play `seeds` (copies of a seed stay together) on the workers; return when the store holds them.

        `model` is the checkpoint folder (or served model name) behind
        `tags.checkpoint_id`; with `follow_run`, each chunk plays that run's
        deployed checkpoint instead. `on_episode` is called for each episode
        as its chunk comes back.
        """
        ray = self.ray
        size = max(1, min(rollout.batch, -(-len(seeds) // len(self.workers))))
        queue = [Chunk(rollout, tags, model, knowledge, part, follow_run) for part in chunks_of(seeds, size)]
        result = PoolResult()
        live = list(range(len(self.workers)))
        failures = Counter[int]()
        in_flight: dict[Any, tuple[int, Chunk]] = {}

        def fill() -> None:
            """Give a chunk to every live worker that has none."""
            busy = {index for index, _chunk in in_flight.values()}
            for index in live:
                if queue and index not in busy:
                    chunk = queue.pop(0)
                    in_flight[self.workers[index].play.remote(chunk)] = (index, chunk)

        fill()
        while in_flight:
            [ref], _ = ray.wait(list(in_flight), num_returns=1)
            index, chunk = in_flight.pop(ref)
            try:
                done: ChunkResult = ray.get(ref)
            except ray.exceptions.RayActorError:
                queue.insert(0, chunk)  # replayed by whoever takes it: what was written is skipped
                failures[index] += 1
                if failures[index] > self.settings.max_restarts:  # gone for good
                    live.remove(index)
                if not live:
                    raise RayError("every Ray worker died; the episodes written so far are kept") from None
                fill()
                continue
            except ray.exceptions.RayTaskError as exc:
                self._cancel(in_flight)
                cause = exc.cause if exc.cause is not None else exc
                first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
                raise RayError(f"a rollout worker failed: {type(cause).__name__}: {first}") from None
            result.workers.setdefault(done.worker, []).extend(done.seeds)
            merge(result.summary, done.summary)
            if on_episode is not None:
                for episode in done.summary.episodes:
                    on_episode(episode, result.summary)
            fill()
        self._check_stored(rollout, tags, knowledge, seeds, follow_run)
        return result

    def player(self, model: str | None) -> Player:
        """A `Player` on checkpoint `model` (for `oel.evaluation.evaluate`)."""

        def play(rollout: RolloutConfig, tags: EpisodeTags, knowledge: str | None, seeds: Sequence[int],
                 on_episode: OnEpisode | None) -> PoolResult:  # fmt: skip
            return self.play(model, rollout, tags, seeds, knowledge=knowledge, on_episode=on_episode)

        return play

    def _check_stored(self, rollout: RolloutConfig, tags: EpisodeTags, knowledge: str | None,
                      seeds: Sequence[int], follow_run: int | None) -> None:  # fmt: skip
        """Raise unless the store holds every handed-out seed (as many times as it was handed out)."""
        lacking, _ = missing_seeds(self.store, Chunk(rollout, tags, None, knowledge, list(seeds), follow_run))
        if lacking:
            raise RayError(f"the workers finished but the store lacks seeds {sorted(set(lacking))}")

    def _cancel(self, in_flight: dict[Any, tuple[int, Chunk]]) -> None:
        for ref in in_flight:
            self.ray.cancel(ref, force=False)
        in_flight.clear()

    def pids(self) -> list[int]:
        """The workers' process ids (for tests and benchmarks that kill one)."""
        return self.ray.get([worker.pid.remote() for worker in self.workers])

    def close(self) -> None:
        """Stop the workers (and the cluster, when this pool started it)."""
        for worker in self.workers:
            self.ray.kill(worker, no_restart=True)
        self.workers = []
        if self._owns_ray:
            self.ray.shutdown()

    def __enter__(self) -> RolloutPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
