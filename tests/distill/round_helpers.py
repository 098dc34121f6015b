"""A played round for the consolidation tests: a model's episodes plus a knowledge version, in a new store."""

from __future__ import annotations

from pathlib import Path

from memory.store import ExperienceStore


def play_round(
    url: str, model: Path, knowledge: str, *, env_id: str = "oel/FrozenLake-v0", episodes: int = 3,
    max_new_tokens: int = 8, action_mode: str = "text", group_size: int = 1, temperature: float = 0.7,
) -> str:  # fmt: skip
    """Run 'r', round 0: `episodes` seeds of `env_id` played `group_size` times each by `model` in
    `action_mode`, and `knowledge` as a version."""
    from agent.hf_policy import HFPolicy
    from agent.policy import SamplingParams
    from agent.rollout import EpisodeTags, RolloutConfig, run_rollouts

    with ExperienceStore.open(url) as store:
        run_id = store.create_run("r")
        round_id = store.start_round(run_id, 0)
        checkpoint = store.checkpoint_for_path(str(model), run_id=run_id)
        config = RolloutConfig(
            env_id=env_id, batch=episodes * group_size, action_mode=action_mode,
            sampling=SamplingParams(temperature=temperature, max_new_tokens=max_new_tokens, seed=0),
        )  # fmt: skip
        tags = EpisodeTags(run_id=run_id, round_id=round_id, checkpoint_id=checkpoint)
        seeds = [s for s in range(episodes) for _ in range(group_size)]
        run_rollouts(HFPolicy(model, device="cpu"), store, config, tags=tags, seeds=seeds)
        store.add_knowledge_version(
            run_id=run_id, round_id=round_id, text=knowledge, item_ids=[], n_tokens=len(knowledge) // 4
        )
    return url
