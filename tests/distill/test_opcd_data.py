"""distill.data: batch order, padded batches, prompt pools read from a real SQLite store."""

from __future__ import annotations

import pytest
import torch

from distill.data import batch_indices, round_checkpoint_path, round_steps, state_pool, won_pool
from distill.errors import ConsolidationError
from distill.text_batches import pack
from memory.records import StepRecord
from memory.store import ExperienceStore


@pytest.mark.parametrize(("n", "batch"), [(5, 2), (7, 7), (3, 4), (1, 3)])
def test_batch_order_visits_every_prompt_once_per_epoch(n, batch):
    stream = [i for step in range(6 * n) for i in batch_indices(n, batch, step, seed=3)]
    for epoch in range(len(stream) // n):
        assert sorted(stream[epoch * n : (epoch + 1) * n]) == list(range(n))


def test_batch_order_depends_only_on_seed_and_step():
    assert batch_indices(50, 4, 7, seed=1) == batch_indices(50, 4, 7, seed=1)
    assert [batch_indices(50, 4, s, seed=1) for s in range(3)] != [
        batch_indices(50, 4, s, seed=2) for s in range(3)
    ]
    with pytest.raises(ConsolidationError):
        batch_indices(0, 4, 0, seed=0)


def test_pack_indexes_the_positions_that_predict_response_tokens():
    prompts, responses = [[5, 6, 7], [8], [9, 10]], [[1, 2], [3, 4, 4], [2]]
    packed = pack(prompts, responses, pad_id=0)
    assert packed.input_ids.shape == (3, 5)  # the longest prompt + response
    assert packed.targets.tolist() == [1, 2, 3, 4, 4, 2]
    # the token after each predicting position is its target, and every predicting position is a real token
    assert torch.equal(packed.input_ids[packed.rows, packed.cols + 1], packed.targets)
    assert packed.attention_mask[packed.rows, packed.cols].all()
    assert packed.attention_mask.sum().item() == sum(len(p) + len(r) for p, r in zip(prompts, responses))
    # a longer prompt for the same responses (the teacher's) yields the same target order
    teacher = pack([[4, 4, *p] for p in prompts], responses, pad_id=0)
    assert torch.equal(teacher.targets, packed.targets)
    with pytest.raises(ConsolidationError):
        pack([[1]], [[]], pad_id=0)


def _episode(store, run_id, round_id, states, won, checkpoint_id=None, completion=(7, 8)):
    steps = [
        StepRecord(
            index=i, state=s, prompt=s, completion_text="[down]", action="[down]", observation="o",
            reward=float(won and i == len(states) - 1), prompt_ids=[1, 2], completion_ids=list(completion),
        )
        for i, s in enumerate(states)
    ]  # fmt: skip
    header = {
        "env_id": "oel/FrozenLake-v0", "task_id": "t", "seed": 0, "split": "train",
        "run_id": run_id, "round_id": round_id, "checkpoint_id": checkpoint_id,
    }  # fmt: skip
    result = {"total_return": float(won), "won": won, "lost": not won, "feedback": ""}
    store.write_episode(header, steps, result)


def test_prompt_pools_from_the_store(tmp_path):
    with ExperienceStore.open(f"sqlite:///{tmp_path}/oel.db") as store:
        run_id = store.create_run("r")
        round_id = store.start_round(run_id, 1)
        other_round = store.start_round(run_id, 2)
        ck_a = store.register_checkpoint(path="/models/a")
        ck_b = store.register_checkpoint(path="/models/b")
        _episode(store, run_id, round_id, ["s0", "s1", "s2"], won=False, checkpoint_id=ck_a)
        _episode(store, run_id, round_id, ["s0", "s3"], won=True, checkpoint_id=ck_b)
        _episode(store, run_id, round_id, ["s0", "s3"], won=True, checkpoint_id=ck_b)
        _episode(store, run_id, other_round, ["elsewhere"], won=True)
        steps = round_steps(store, "r", 1, "train")
        assert [e.state for e in state_pool(steps)] == ["s0", "s1", "s2", "s3"]
        sft = won_pool(steps)
        assert [(e.state, e.completion_ids) for e in sft] == [("s0", (7, 8)), ("s3", (7, 8))]
        assert round_checkpoint_path(store, steps) == "/models/b"  # 4 of the round's 7 steps
        with pytest.raises(ConsolidationError, match="round 3"):
            round_steps(store, "r", 3, "train")
        _episode(store, run_id, store.start_round(run_id, 4), ["x"], won=False)
        assert won_pool(round_steps(store, "r", 4, "train")) == []  # SFT then trains nothing
