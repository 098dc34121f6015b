"""The raw-trajectory baseline: earlier episodes pasted into the context as they are, under the same cap.

OEL's tables compare no knowledge, raw trajectories, and extracted knowledge
in context. For the raw condition we render the run's most recent train
episodes exactly as the extractor would read them (`trajectory`), newest
first, and keep each whole trajectory that still fits the token cap (one too
long is skipped, an older, shorter one may fit); the kept ones are then shown
oldest first, like accumulated items. The result is
stored as a knowledge version of kind `raw` (and says so in its first line),
so the episodes that are played with it record what they saw, while
`latest_knowledge_version` (deploy, distill) never picks it up. Building the
same text again returns the stored version, so an evaluation with it resumes.
"""

from __future__ import annotations

from memory import queries
from memory.knowledge.errors import KnowledgeError
from memory.knowledge.generator import TokenCounter, approx_token_count
from memory.knowledge.trajectory import load_trajectory, render_trajectory
from memory.store import ExperienceStore

RAW_HEADER = "Raw records of earlier games (not summarised):"


def build_raw_version(
    store: ExperienceStore,
    run_id: int,
    *,
    env_id: str | None = None,
    count_tokens: TokenCounter | None = None,
    token_cap: int = 2048,
    max_reply_chars: int = 400,
    round_id: int | None = None,
) -> tuple[int, str]:
    """Store the raw-trajectory version of run `run_id`'s train episodes (of `env_id`); return (id, text)."""
    if token_cap < 1:
        raise KnowledgeError(f"the knowledge token cap must be >= 1, got {token_cap}")
    counter = count_tokens or approx_token_count
    episodes = queries.episodes(store, run=run_id, env=env_id, split="train")
    if episodes.empty:
        where = f" of {env_id}" if env_id else ""
        raise KnowledgeError(
            f"run {run_id} has no train episodes{where} to paste as raw trajectories; "
            "play some with `oel play --split train`"
        )
    kept: list[tuple[int, str]] = []
    for episode_id in reversed(episodes["id"].tolist()):
        block = f"Game (episode {episode_id}):\n" + render_trajectory(
            load_trajectory(store, int(episode_id)), max_reply_chars
        )
        trial = "\n\n".join([RAW_HEADER, *(b for _e, b in reversed([*kept, (episode_id, block)]))])
        if counter(trial) <= token_cap:
            kept.append((int(episode_id), block))
    if not kept:
        raise KnowledgeError(f"not even one trajectory fits in {token_cap} tokens; raise the cap")
    kept.reverse()
    text = "\n\n".join([RAW_HEADER, *(block for _e, block in kept)])
    meta = {
        "episodes": [e for e, _b in kept],
        "token_cap": token_cap,
        "token_count": "tokenizer" if count_tokens is not None else "chars/4",
    }
    existing = store.latest_knowledge_version(run_id, kinds=("raw",))
    if existing is not None and existing[1] == text:  # the same context again: one version, resumable evals
        return existing
    n_tokens = counter(text)
    version_id = store.add_knowledge_version(
        run_id=run_id, round_id=round_id, text=text, item_ids=[], n_tokens=n_tokens, kind="raw", meta=meta
    )
    return version_id, text
