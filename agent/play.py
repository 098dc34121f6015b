"""What `oel play` does: open the store, load the policy, resolve knowledge, roll out with a live bar.

Kept apart from the CLI module so the online loop can call the same path, and
so the argument parsing stays free of heavy imports. With `ray`, the episodes
are played by Ray rollout workers (`agent.ray_pool`) that write them to the
store themselves; `follow` then has each worker read the deployment before
each chunk of seeds.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from agent.backends import REMOTE_BACKENDS, make_policy
from agent.forms import make_form
from agent.model import ModelLoadError
from agent.policy import PolicyError, SamplingParams
from agent.ray_pool import PolicySpec, RayError, RaySettings, RolloutPool, seed_ranges
from agent.rollout import EpisodeTags, FinishedEpisode, RolloutConfig, RolloutSummary, run_rollouts
from envs.checks import ENV_ERRORS, check_env
from envs.splits import SPLITS
from memory.errors import StoreError
from memory.store import ExperienceStore


class PlayError(Exception):
    """A user-facing problem with `oel play` arguments, the model or the store."""


def resolve_knowledge(store: ExperienceStore, run_id: int, spec: str) -> tuple[int | None, str | None]:
    """Map `--knowledge none|latest|ID` to (knowledge version id, rendered text)."""
    if spec == "none":
        return None, None
    if spec == "latest":
        version = store.latest_knowledge_version(run_id)
        if version is None:
            raise PlayError(f"run {run_id} has no knowledge version yet; run `oel knowledge extract` first")
        return version
    if not spec.isdigit():
        raise PlayError(f"--knowledge takes none, latest or a version id, got {spec!r}")
    version = store.knowledge_version(int(spec), run_id=run_id)
    return version["id"], version["text"]


def summary_table(summary: RolloutSummary, title: str) -> Table:
    """The end-of-run table: episodes, success, return, steps, tokens and speed."""
    n = len(summary.episodes) or 1
    table = Table(title=title)
    for column in ("episodes", "success", "mean return", "steps/ep", "tokens/ep", "env steps/s", "tokens/s"):
        table.add_column(column, justify="right")
    table.add_row(
        str(len(summary.episodes)),
        f"{summary.success_rate:.1%}",
        f"{summary.mean_return:.3f}",
        f"{sum(e.steps for e in summary.episodes) / n:.2f}",
        f"{sum(e.generated_tokens for e in summary.episodes) / n:.1f}",
        f"{summary.steps_per_second:.2f}",
        f"{summary.tokens_per_second:.1f}",
    )
    return table


def play_and_report(
    *, env: str, episodes: int, split: str, batch: int, seed: int, model: str | None, backend: str,
    knowledge: str, run: str, round_index: int | None, db: str | None, temperature: float, top_p: float,
    top_k: int, max_new_tokens: int, follow: bool = False, action_mode: str = "text",
    ray: RaySettings | None = None, backend_options: dict | None = None, env_kwargs: dict | None = None,
) -> RolloutSummary:  # fmt: skip
    """Play `episodes` episodes with a live progress bar, store them, and print a summary table.

    With `follow`, the episodes are played in waves of `batch`, and before each
    wave the run's deployed checkpoint (`memory.rounds`) is read; when it
    changed, the policy reloads it, so a loop's new checkpoint is served from
    the next episode on. Without a deployment yet, `model` is served.
    `ray` (enabled): Ray rollout workers play the episodes instead, each with
    its own policy built from `backend` and `backend_options`.
    """
    import gymnasium

    import envs  # noqa: F401  (registers the environments)
    from agent.model import resolve_model_path

    console = Console()
    if env not in gymnasium.registry:
        known = ", ".join(spec.env_id for spec in envs.ENVIRONMENTS)
        raise PlayError(f"unknown environment {env!r}; registered: {known}")
    if split not in SPLITS:
        raise PlayError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    try:
        check_env(env, env_kwargs)
    except ENV_ERRORS as exc:
        raise PlayError(str(exc)) from None
    try:
        sampling = SamplingParams(
            temperature=temperature, top_p=top_p, top_k=top_k, max_new_tokens=max_new_tokens
        )
        store = ExperienceStore.open(db)
    except (PolicyError, StoreError) as exc:
        raise PlayError(str(exc)) from None
    try:
        run_id = store.ensure_run(run)
        round_id = None if round_index is None else store.start_round(run_id, round_index)
        knowledge_id, knowledge_text = resolve_knowledge(store, run_id, knowledge)
        with console.status("loading the policy ..."):
            path = model if backend in REMOTE_BACKENDS else str(resolve_model_path(model))
            policy = make_policy(backend, path, **(backend_options or {}))
        checkpoint_id = store.checkpoint_for_path(str(path), run_id=run_id)
        config = RolloutConfig(
            env_id=env, split=split, episodes=episodes, batch=batch, seed=seed, sampling=sampling,
            action_mode=action_mode, env_kwargs=dict(env_kwargs or {}),
        )  # fmt: skip
        make_form(policy, action_mode)  # refuse a mode the backend cannot play before anything runs
        tags = EpisodeTags(
            run_id=run_id, round_id=round_id, checkpoint_id=checkpoint_id, knowledge_version_id=knowledge_id
        )
        columns = (
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("success {task.fields[success]}"), TextColumn("{task.fields[tps]} tok/s"),
            TimeElapsedColumn(),
        )  # fmt: skip
        with Progress(*columns, console=console) as progress:
            task = progress.add_task(escape(f"{env} [{split}]"), total=episodes, success="-", tps="-")

            def on_episode(_done: FinishedEpisode, summary: RolloutSummary) -> None:
                progress.update(
                    task, advance=1, success=f"{summary.success_rate:.0%}",
                    tps=f"{summary.tokens_per_second:.1f}",
                )  # fmt: skip

            if ray is not None and ray.enabled:
                with RolloutPool(ray, store, PolicySpec(backend, backend_options or {})) as pool:
                    played = pool.play(
                        path, config, tags, [seed + i for i in range(episodes)], knowledge=knowledge_text,
                        follow_run=run_id if follow else None, on_episode=on_episode,
                    )  # fmt: skip
                summary = played.summary
                for worker, seeds in sorted(played.workers.items()):
                    console.print(f"{escape(worker)} played seeds {seed_ranges(seeds)}")
            elif not follow:
                summary = run_rollouts(
                    policy, store, config, knowledge=knowledge_text, tags=tags, on_episode=on_episode
                )
            else:
                summary = RolloutSummary()
                for start in range(0, episodes, batch):
                    deployed = store.deployed_checkpoint(run_id)
                    if deployed is not None and deployed[0] != tags.checkpoint_id:
                        policy.reload(deployed[1])
                        tags.checkpoint_id = deployed[0]
                        console.print(f"serving checkpoint {deployed[0]} ({escape(deployed[1])})")
                    seeds = range(seed + start, seed + min(start + batch, episodes))
                    wave = run_rollouts(
                        policy, store, config, knowledge=knowledge_text, tags=tags, seeds=seeds,
                        on_episode=on_episode,
                    )  # fmt: skip
                    summary.episodes += wave.episodes
                    summary.seconds += wave.seconds
                    summary.policy_calls += wave.policy_calls
                    summary.env_steps += wave.env_steps
                    summary.generated_tokens += wave.generated_tokens
    except (ModelLoadError, PolicyError, RayError, StoreError, *ENV_ERRORS) as exc:
        raise PlayError(str(exc)) from None
    finally:
        store.close()
    console.print(
        summary_table(summary, escape(f"{env} [{split}] {policy.name}, {action_mode}, knowledge={knowledge}"))
    )
    return summary
