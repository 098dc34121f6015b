"""The extraction job against a real store, with a canned extractor (a test double for the LLM).

Episodes are real FrozenLake games played with fixed actions and logged
through the store's write API, so trajectories are rendered from real rows.
"""

from __future__ import annotations

import gymnasium
import pytest

import envs  # noqa: F401  (registers the environments)
from memory import queries
from memory.knowledge.errors import KnowledgeError
from memory.knowledge.extract import ExtractionConfig, extract_knowledge
from memory.knowledge.prompt import NO_KNOWLEDGE, PROMPT_VERSION
from memory.knowledge.raw import RAW_HEADER, build_raw_version
from memory.records import StepRecord
from memory.store import ExperienceStore


def log_episode(store: ExperienceStore, run_id: int, seed: int, actions: list[str]) -> int:
    """Play FrozenLake train task `seed` with `actions` (until it ends) and store the episode."""
    env = gymnasium.make("oel/FrozenLake-v0", split="train")
    observation, info = env.reset(seed=seed)
    steps, total, done = [], 0.0, False
    for index, action in enumerate(actions):
        state = observation
        observation, reward, terminated, truncated, info = env.step(action)
        total += reward
        steps.append(
            StepRecord(index=index, state=state, prompt=state, completion_text=f"I go {action}",
                       action=action, observation=observation, reward=reward)
        )  # fmt: skip
        if terminated or truncated:
            done = True
            break
    env.close()
    assert done, "the fixed actions must end the episode"
    header = {"env_id": "oel/FrozenLake-v0", "task_id": info["task_id"], "seed": seed, "split": "train",
              "run_id": run_id}  # fmt: skip
    result = {"total_return": total, "won": bool(info["won"]), "lost": bool(info["lost"]),
              "feedback": info.get("feedback", "")}  # fmt: skip
    return store.write_episode(header, steps, result)


class CannedExtractor:
    """Returns prepared replies in turn and remembers the prompts and budgets it was given."""

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)
        self.calls: list[tuple[list[str], int]] = []

    def generate_texts(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        self.calls.append((list(prompts), max_new_tokens))
        out, self.replies = self.replies[: len(prompts)], self.replies[len(prompts) :]
        return out


def words(text: str) -> int:
    return len(text.split())


@pytest.fixture
def logged(store: ExperienceStore) -> tuple[int, list[int]]:
    run_id = store.create_run("k")
    moves = ["[down]", "[right]", "[up]", "[left]"]
    return run_id, [log_episode(store, run_id, seed, moves * 2) for seed in range(3)]


def test_items_keep_provenance_votes_add_up_and_each_round_is_a_version(store, logged) -> None:
    run_id, episodes = logged
    round_id = store.start_round(run_id, 0)
    checkpoint = store.register_checkpoint(path="/models/x", run_id=run_id)
    extractor = CannedExtractor([
        "- EXPERIENCE ITEM: Holes end the game, so avoid them.\n- EXPERIENCE ITEM: ...",
        "Sure!\n- EXPERIENCE ITEM: Avoid the holes, they end the game.",
        "nothing useful",
    ])  # fmt: skip
    config = ExtractionConfig(batch=2, max_new_tokens=40)
    first = extract_knowledge(
        store, extractor, episodes, run_id=run_id, round_id=round_id, extractor_checkpoint_id=checkpoint,
        count_tokens=words, config=config,
    )  # fmt: skip
    # one batched call per `batch` trajectories, with the asked budget; no knowledge shown yet
    assert [(len(prompts), budget) for prompts, budget in extractor.calls] == [(2, 40), (1, 40)]
    assert all(NO_KNOWLEDGE in p for prompts, _ in extractor.calls for p in prompts)
    assert first.counts.as_dict() == {
        "replies": 3, "replies_without_items": 1, "items_found": 3, "accepted": 2, "rejected_empty": 1,
        "rejected_too_long": 0, "rejected_restates_map": 0, "rejected_copied": 0, "rejected_duplicate": 0,
        "rejected_over_limit": 0,
    }  # fmt: skip
    # two trajectories said the same thing: one item, two votes, both episodes as sources
    items = queries.knowledge_items(store, run_id)
    columns = ["text", "votes", "n_sources", "round", "prompt_version", "extractor_checkpoint"]
    assert items[columns].values.tolist() == [
        ["Holes end the game, so avoid them.", 2, 2, 0, PROMPT_VERSION, checkpoint]
    ]
    assert first.text == "- EXPERIENCE ITEM: Holes end the game, so avoid them."
    assert store.latest_knowledge_version(run_id) == (first.version_id, first.text)

    # round 1: the extractor sees the current knowledge; an AGREE from a new episode adds a vote,
    # a repeat from an already-linked episode adds none
    more = log_episode(store, run_id, 7, ["[right]", "[right]", "[down]", "[down]", "[left]"])
    second_extractor = CannedExtractor([
        "- EXPERIENCE ITEM: avoid holes; holes end the game\n- EXPERIENCE ITEM: Reach the goal corner.",
        "- EXPERIENCE ITEM: Holes end the game. Avoid them!",
    ])  # fmt: skip
    second = extract_knowledge(
        store, second_extractor, [more, episodes[0]], run_id=run_id, count_tokens=words, config=config
    )
    assert all(first.text in p for p in second_extractor.calls[0][0])
    assert second.agreed == {int(items["id"][0]): 3}
    items = queries.knowledge_items(store, run_id)
    assert dict(zip(items["text"], items["votes"], strict=True)) == {
        "Holes end the game, so avoid them.": 3, "Reach the goal corner.": 1
    }  # fmt: skip
    meta = queries.knowledge_versions(store, run_id).set_index("id").loc[second.version_id, "meta"]
    assert meta["parent_version"] == first.version_id and meta["episodes"] == [more, episodes[0]]
    assert second.text.splitlines()[0] == "- EXPERIENCE ITEM: Holes end the game, so avoid them."


def test_the_cap_holds_and_the_version_lists_its_items_in_order(store, logged) -> None:
    run_id, episodes = logged
    rules = ("holes end every game", "goal sits far corner", "count remaining steps carefully")
    replies = [f"- EXPERIENCE ITEM: {rule}" for rule in rules]  # 7 words per rendered line
    result = extract_knowledge(
        store, CannedExtractor(replies), episodes, run_id=run_id, count_tokens=words,
        config=ExtractionConfig(token_cap=2 * 7),
    )  # fmt: skip
    assert result.n_items == 2 and result.dropped == 1
    assert result.n_tokens == words(result.text) <= 14
    in_version = queries.knowledge_items(store, run_id, version_id=result.version_id)
    assert in_version["text"].tolist() == [rules[2], rules[1]]  # equal votes: newest first, oldest dropped


def test_extraction_without_a_tokenizer_says_it_estimated(store, logged) -> None:
    run_id, episodes = logged
    result = extract_knowledge(store, CannedExtractor(["x"] * 3), episodes, run_id=run_id)
    assert result.token_count == "chars/4" and result.text == "" and result.n_items == 0


def test_bad_inputs_name_the_problem(store, logged) -> None:
    run_id, episodes = logged
    with pytest.raises(KnowledgeError, match="no episodes"):
        extract_knowledge(store, CannedExtractor([]), [], run_id=run_id)
    with pytest.raises(KnowledgeError, match="no episode with id 999"):
        extract_knowledge(store, CannedExtractor(["x"]), [999], run_id=run_id)
    with pytest.raises(KnowledgeError, match="returned 1 replies for 3 prompts"):
        extract_knowledge(store, CannedExtractor(["x"]), episodes, run_id=run_id)


def test_raw_version_pastes_whole_newest_trajectories_under_the_cap(store, logged) -> None:
    run_id, episodes = logged
    version_id, text = build_raw_version(store, run_id, count_tokens=words, token_cap=10_000)
    assert text.startswith(RAW_HEADER) and text.count("Game (episode") == 3
    info = queries.knowledge_versions(store, run_id).set_index("id").loc[version_id]
    assert info["kind"] == "raw" and info["meta"]["episodes"] == episodes
    # raw versions never become the deployed knowledge
    assert store.latest_knowledge_version(run_id) is None
    assert store.latest_knowledge_version(run_id, kinds=None) == (version_id, text)
    one = words(text) // 3 + 5
    _, small = build_raw_version(store, run_id, count_tokens=words, token_cap=one)
    assert small.count("Game (episode") == 1 and f"episode {episodes[-1]})" in small and words(small) <= one
    with pytest.raises(KnowledgeError, match="no train episodes"):
        build_raw_version(store, store.create_run("empty"))
