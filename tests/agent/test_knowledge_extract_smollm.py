"""Knowledge extraction with the REAL SmolLM2 as extractor, over trajectories logged by real rollouts."""

from __future__ import annotations

import re

import pytest

from agent.extractor import PolicyTextGenerator, make_extractor, policy_token_counter
from agent.policy import PolicyError, SamplingParams
from agent.rollout import EpisodeTags, RolloutConfig, run_rollouts
from memory import queries
from memory.knowledge.accumulate import KnowledgeEntry, render_knowledge
from memory.knowledge.authored import add_authored_knowledge
from memory.knowledge.extract import ExtractionConfig, extract_knowledge
from memory.knowledge.parse import REJECT_REASONS
from memory.knowledge.prompt import PROMPT_VERSION
from memory.store import ExperienceStore


@pytest.fixture
def store(tmp_path):
    with ExperienceStore.open(f"sqlite:///{tmp_path / 'oel.db'}") as s:
        yield s


@pytest.fixture(scope="module")
def tiny_policy(tiny_path):
    from agent.hf_policy import HFPolicy

    return HFPolicy(tiny_path, device="cpu")


def test_the_cap_is_respected_in_the_policys_tokens(smollm_policy) -> None:
    count = policy_token_counter(smollm_policy)
    entries = [
        KnowledgeEntry(f"Rule {i}: holes end the game, so plan around them.", order=i) for i in range(40)
    ]
    rendered = render_knowledge(entries, count, cap=64)
    assert 0 < rendered.n_tokens <= 64
    assert rendered.n_tokens == len(
        smollm_policy.tokenizer(rendered.text, add_special_tokens=False)["input_ids"]
    )
    assert rendered.dropped == 40 - len(rendered.entries) > 0


def test_policy_adapter_batches_and_default_extractor_is_the_policy(tiny_policy) -> None:
    generator, behind = make_extractor(tiny_policy)
    assert behind is tiny_policy and generator.name == tiny_policy.name
    texts = generator.generate_texts(["Say hi.", "A longer prompt about a frozen lake."], max_new_tokens=3)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    with pytest.raises(PolicyError, match="package.module:attribute"):
        make_extractor(None, "not-a-spec", "langchain")
    with pytest.raises(PolicyError, match="not a langchain_core BaseChatModel"):
        make_extractor(None, "collections:OrderedDict", "langchain")


MARKER = re.compile(r"EXPERIENCE ITEM[ \t]*:", re.IGNORECASE)
FEW_TOKENS = SamplingParams(max_new_tokens=6, seed=0)
PREVIOUS = ["Holes end the game at once, so step around them.",
            "The goal is in the far corner; move down and right toward it."]  # fmt: skip


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


class RecordingGenerator(PolicyTextGenerator):
    """The extractor as the loop builds it, keeping every reply for the test to read."""

    def __init__(self, policy, sampling) -> None:
        super().__init__(policy, sampling)
        self.replies: list[str] = []

    def generate_texts(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        replies = super().generate_texts(prompts, max_new_tokens)
        self.replies += replies
        return replies


@pytest.mark.slow
def test_smollm_extracts_items_with_provenance_and_counts_every_rejection(
    store, tiny_policy, smollm_policy, smollm_path
) -> None:
    """A second extraction (the run already holds knowledge, which the prompt shows, as in OEL's
    exp_sel_with_prev) at the default reply length: SmolLM2 writes items in the shown format. Each item
    its replies hold is kept with its source episode or rejected for a named reason, and the tallies
    are checked against the replies themselves."""
    run_id = store.create_run("real")
    round_id = store.start_round(run_id, 0)
    add_authored_knowledge(store, run_id, PREVIOUS, author="person")
    played = run_rollouts(
        tiny_policy, store, RolloutConfig(episodes=3, batch=3, sampling=FEW_TOKENS),
        tags=EpisodeTags(run_id=run_id, round_id=round_id),
    )  # fmt: skip
    episodes = [e.episode_id for e in played.episodes]
    checkpoint = store.checkpoint_for_path(str(smollm_path), run_id=run_id)
    generator = RecordingGenerator(smollm_policy, SamplingParams(seed=0))
    result = extract_knowledge(
        store, generator, episodes, run_id=run_id, round_id=round_id, extractor_checkpoint_id=checkpoint,
        count_tokens=policy_token_counter(smollm_policy), config=ExtractionConfig(batch=3),
    )  # fmt: skip
    counts = result.counts.as_dict()
    # the tallies are what the replies hold: one item per marker, replies without one counted as such
    replies = generator.replies
    assert counts["replies"] == len(replies) == 3
    assert counts["items_found"] == sum(len(MARKER.findall(reply)) for reply in replies) > 0
    assert counts["replies_without_items"] == sum(not MARKER.search(reply) for reply in replies)
    # every item found is kept, or rejected for a named reason; and some are kept
    assert counts["items_found"] == counts["accepted"] + sum(counts[f"rejected_{r}"] for r in REJECT_REASONS)
    assert counts["accepted"] >= 1 and (result.added or result.agreed)
    assert len(result.added) + len(result.agreed) <= counts["accepted"]
    # a new item names its extractor and prompt, and its sources are episodes whose reply wrote it
    items = queries.knowledge_items(store, run_id).set_index("id")
    assert set(result.added) <= set(items.index)
    reply_of = dict(zip(episodes, replies, strict=True))
    for item in result.added:
        row = items.loc[item]
        assert row["prompt_version"] == PROMPT_VERSION and row["extractor_checkpoint"] == checkpoint
        assert row["round"] == 0 and 1 <= row["n_sources"] == row["votes"] <= 3
        sources = queries.item_sources(store, item)
        assert set(sources) <= set(episodes) and len(sources) == row["n_sources"]
        assert any(_words(row["text"]) in _words(reply_of[source]) for source in sources), row["text"]
    for item, votes in result.agreed.items():
        assert items.loc[item, "votes"] == votes and set(queries.item_sources(store, item)) & set(episodes)
    # the version holds what fits the cap, measured with SmolLM2's tokenizer
    assert result.n_tokens == len(smollm_policy.tokenizer(result.text, add_special_tokens=False)["input_ids"])
    assert result.n_tokens <= 2048 and result.token_count == "tokenizer"
    assert store.latest_knowledge_version(run_id) == (result.version_id, result.text)
