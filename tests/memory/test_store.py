"""The store's write API on SQLite and PostgreSQL: lifecycle, visibility, state machine, provenance."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from store_helpers import insert_running_episode, make_steps

from memory import queries
from memory.db import retry_locked
from memory.models import KnowledgeItemSource, KnowledgeVersionItem, Round
from memory.records import CandidateDistribution, StepRecord
from memory.store import ExperienceStore, StoreError

HEADER = {"env_id": "oel/Test-v0", "task_id": "t0", "seed": 3, "split": "train"}
RESULT = {"total_return": 1.0, "won": True, "lost": False, "feedback": "you won"}


def test_runs_are_unique_and_found_by_name(store: ExperienceStore) -> None:
    run = store.create_run("exp", {"lr": 1e-6})
    assert store.get_run("exp") == run
    assert store.get_run("nope") is None
    with pytest.raises(StoreError, match="already exists"):
        store.create_run("exp")


def test_start_round_is_idempotent(store: ExperienceStore) -> None:
    run = store.create_run("exp")
    first = store.start_round(run, 0)
    assert store.start_round(run, 0) == first
    assert store.start_round(run, 1) != first
    with pytest.raises(StoreError, match="no run"):
        store.start_round(run + 1000, 0)


def test_phases_drive_the_round_state_machine(store: ExperienceStore) -> None:
    round_id = store.start_round(store.create_run("exp"), 0)
    assert store.round_status(round_id) == "pending"
    for phase in ("collect", "extract", "consolidate", "evaluate", "deploy"):
        store.complete_phase(store.begin_phase(round_id, phase), {"phase": phase})
        assert store.round_status(round_id) == phase
    store.finish_round(round_id)
    assert store.round_status(round_id) == "done"
    with pytest.raises(StoreError, match="the round is done"):
        store.begin_phase(round_id, "deploy")
    with store.reading() as conn:
        row = conn.execute(select(Round.__table__).where(Round.id == round_id)).one()
    assert row.started_at is not None and row.finished_at >= row.started_at
    assert store.phase_results(round_id)["evaluate"] == {"phase": "evaluate"}


def test_round_skips_forward_fails_and_restarts_but_never_goes_back(store: ExperienceStore) -> None:
    round_id = store.start_round(store.create_run("exp"), 0)
    store.complete_phase(store.begin_phase(round_id, "collect"))
    consolidate = store.begin_phase(round_id, "consolidate")  # an RL-only round has no extraction
    with pytest.raises(StoreError, match="consolidate -> extract"):
        store.begin_phase(round_id, "extract")
    store.fail_phase(consolidate, "out of memory")
    assert store.round_status(round_id) == "failed"
    with pytest.raises(StoreError, match="only a round whose phases ran"):
        store.finish_round(round_id)
    assert store.begin_phase(round_id, "consolidate") == consolidate  # restarted, same job
    assert store.round_status(round_id) == "consolidate"
    assert store.begin_phase(round_id, "consolidate") == consolidate  # a kill -9 left it running: restart
    with pytest.raises(StoreError, match="unknown phase"):
        store.begin_phase(round_id, "paused")
    with pytest.raises(StoreError, match="no round"):
        store.begin_phase(round_id + 1000, "collect")


def test_running_rows_of_older_writers_stay_invisible(store: ExperienceStore) -> None:
    store.write_episode(HEADER, make_steps(2), RESULT)
    insert_running_episode(store, make_steps(3))
    assert len(queries.episodes(store)) == 1
    assert queries.success_rate(store, by=()).loc[0, "episodes"] == 1
    assert list(queries.episodes(store, include_incomplete=True)["status"]) == ["complete", "running"]
    assert len(queries.steps(store)) == 2 and len(queries.steps(store, include_incomplete=True)) == 5


def test_write_episode_round_trips_exactly(store: ExperienceStore) -> None:
    steps = make_steps(4, tag=9)
    episode = store.write_episode(HEADER, steps, RESULT)
    df = queries.transcript(store, episode)
    assert list(df["index"]) == [s.index for s in steps]
    assert list(df["action"]) == [s.action for s in steps]
    assert list(df["observation"]) == [s.observation for s in steps]
    assert list(df["prompt_ids"]) == [s.prompt_ids for s in steps]
    assert list(df["completion_ids"]) == [s.completion_ids for s in steps]
    assert list(df["logprobs"]) == [s.logprobs for s in steps]  # powers of two survive float32
    assert df["reward"].tolist() == [s.reward for s in steps]


def test_missing_token_ids_make_token_count_unknown(store: ExperienceStore) -> None:
    episode = store.write_episode(HEADER, make_steps(3, with_tokens=False), RESULT)
    row = queries.episodes(store).iloc[0]
    assert row["id"] == episode and row["n_steps"] == 3
    assert row["n_tokens"] is None or row["n_tokens"] != row["n_tokens"]  # NULL -> None or NaN
    assert queries.transcript(store, episode)["completion_ids"].tolist() == [None] * 3


def test_write_episodes_returns_ids_in_order(store: ExperienceStore) -> None:
    batch = [({**HEADER, "seed": k}, make_steps(k + 1, tag=k), RESULT) for k in range(6)]
    ids = store.write_episodes(batch)
    df = queries.episodes(store)
    assert dict(zip(df["id"], df["seed"], strict=True)) == {ids[k]: k for k in range(6)}
    assert [len(queries.transcript(store, i)) for i in ids] == [1, 2, 3, 4, 5, 6]


def test_write_episode_rejects_bad_keys(store: ExperienceStore) -> None:
    with pytest.raises(StoreError, match="unknown keys \\['colour'\\]"):
        store.write_episode({**HEADER, "colour": "red"}, [], RESULT)
    with pytest.raises(StoreError, match="result.won"):
        store.write_episode(HEADER, [], {"total_return": 0.0, "lost": False, "feedback": ""})
    with pytest.raises(StoreError, match="int32"):
        store.write_episode(HEADER, [StepRecord(0, "", "", "", "", "", 0.0, [2**40])], RESULT)
    assert queries.episodes(store, include_incomplete=True).empty


def test_dangling_reference_is_a_store_error(store: ExperienceStore) -> None:
    with pytest.raises(StoreError, match="cannot write episodes"):
        store.write_episode({**HEADER, "round_id": 999}, make_steps(1), RESULT)


def test_knowledge_items_keep_provenance_and_versions_keep_order(store: ExperienceStore) -> None:
    run = store.create_run("exp")
    round_id = store.start_round(run, 0)
    e1 = store.write_episode({**HEADER, "run_id": run, "round_id": round_id}, make_steps(2), RESULT)
    e2 = store.write_episode({**HEADER, "run_id": run, "round_id": round_id}, make_steps(2), RESULT)
    a = store.add_knowledge_item(
        run_id=run, round_id=round_id, text="holes end the game", source_episode_ids=[e1, e2, e1]
    )
    b = store.add_knowledge_item(
        run_id=run, round_id=round_id, text="go right first", source_episode_ids=[e2]
    )
    version = store.add_knowledge_version(
        run_id=run, round_id=round_id, text="- x\n- y", item_ids=[b, a], n_tokens=12
    )
    with store.reading() as conn:
        sources = set(conn.execute(select(KnowledgeItemSource.item_id, KnowledgeItemSource.episode_id)).all())
        members = conn.execute(
            select(KnowledgeVersionItem.item_id).where(KnowledgeVersionItem.version_id == version)
            .order_by(KnowledgeVersionItem.position)
        ).scalars().all()  # fmt: skip
    assert sources == {(a, e1), (a, e2), (b, e2)}
    assert members == [b, a]
    with pytest.raises(StoreError, match="knowledge item"):
        store.add_knowledge_item(run_id=run, round_id=round_id, text="x", source_episode_ids=[e2 + 99])


def test_consolidation_records_steps_and_result(store: ExperienceStore) -> None:
    run = store.create_run("exp")
    parent = store.register_checkpoint(path="/ckpt/0", run_id=run, bits_per_weight=16.0)
    job = store.start_consolidation(
        run_id=run, round_id=None, method="opcd", hparams={"lr": 2e-6, "k": 256},
        knowledge_version_id=None, parent_checkpoint_id=parent,
    )  # fmt: skip
    rows = [{"step": step, "loss": 1.0 / (step + 1), "kl": 0.1} for step in range(3)]
    assert store.log_consolidation_steps(job, rows[:2]) == 2
    assert store.log_consolidation_steps(job, [*rows, {"step": 1, "loss": 0.0}]) == 1  # steps 0, 1 kept
    child = store.register_checkpoint(path="/ckpt/1", parent_id=parent, method="opcd", fmt="ternary-2:4")
    store.finish_consolidation(job, child)
    with pytest.raises(StoreError, match="already complete"):
        store.finish_consolidation(job, child)
    steps = queries.table(store, "consolidation_steps")
    assert steps["metrics"].map(lambda m: m["loss"]).tolist() == [1.0, 0.5, 1.0 / 3]
    done = queries.table(store, "consolidations").iloc[0]
    assert done["status"] == "complete" and done["checkpoint_id"] == child and done["hparams"]["k"] == 256
    assert queries.table(store, "checkpoints").set_index("id").loc[child, "parent_id"] == parent


def test_phases_resume_after_the_last_completed(store: ExperienceStore) -> None:
    round_id = store.start_round(store.create_run("exp"), 0)
    collect = store.begin_phase(round_id, "collect")
    store.complete_phase(collect)
    extract = store.begin_phase(round_id, "extract")
    store.fail_phase(extract, "extractor crashed")
    assert set(store.phase_results(round_id)) == {"collect"}
    assert store.begin_phase(round_id, "extract") == extract  # retried, same job
    store.complete_phase(extract)
    assert set(store.phase_results(round_id)) == {"collect", "extract"}
    with pytest.raises(StoreError, match="already complete"):
        store.begin_phase(round_id, "extract")
    phases = queries.table(store, "phases").set_index("phase")
    assert phases.loc["extract", "attempts"] == 2 and phases.loc["extract", "error"] is None
    with pytest.raises(StoreError, match="not running"):
        store.complete_phase(collect)


def test_retry_locked_retries_only_lock_errors() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))
        return "ok"

    assert retry_locked(flaky) == "ok" and len(calls) == 3

    def broken() -> None:
        raise OperationalError("SELECT", {}, Exception("no such table: x"))

    with pytest.raises(OperationalError):
        retry_locked(broken)
    with pytest.raises(StoreError, match="stayed locked"):
        retry_locked(_always_locked, deadline_s=0.05)


def _always_locked() -> None:
    raise OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))


def test_default_url_comes_from_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OEL_DB_URL", raising=False)
    with ExperienceStore.open() as store:
        assert store.url == "sqlite:///oel.db"
    assert (tmp_path / "oel.db").exists()
    monkeypatch.setenv("OEL_DB_URL", f"sqlite:///{tmp_path / 'other.db'}")
    with ExperienceStore.open() as store:
        store.create_run("x")
    assert (tmp_path / "other.db").exists()


def test_sqlite_is_in_wal_mode(tmp_path) -> None:
    with ExperienceStore.open(f"sqlite:///{tmp_path / 'w.db'}") as store:
        assert store.read_only_sql("PRAGMA journal_mode").iloc[0, 0] == "wal"
        assert store.read_only_sql("PRAGMA synchronous").iloc[0, 0] == 1  # NORMAL
        assert store.read_only_sql("PRAGMA foreign_keys").iloc[0, 0] == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "not a database URL"),
        ("postgres://u@h/db", "unsupported database 'postgres'"),
        ("mysql://u@h/db", "unsupported database 'mysql'"),
        ("sqlite:////definitely/not/here/oel.db", "directory '/definitely/not/here' does not exist"),
        ("postgresql+psycopg://postgres@127.0.0.1:1/test", "cannot connect to"),
    ],
)
def test_bad_urls_give_one_clear_error(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as info:
        ExperienceStore.open(url)
    assert "\n" not in str(info.value)


def test_checkpoint_for_path_registers_once(store):
    first = store.checkpoint_for_path("/models/a")
    assert store.checkpoint_for_path("/models/a") == first
    assert store.checkpoint_for_path("/models/b") != first


def test_latest_knowledge_version_and_text(store):
    run_id = store.create_run("kv")
    assert store.latest_knowledge_version(run_id) is None
    store.add_knowledge_version(run_id=run_id, round_id=None, text="old", item_ids=[], n_tokens=1)
    newest = store.add_knowledge_version(run_id=run_id, round_id=None, text="new", item_ids=[], n_tokens=1)
    assert store.latest_knowledge_version(run_id) == (newest, "new")
    assert store.knowledge_text(newest) == "new"
    with pytest.raises(StoreError, match="no knowledge version 999"):
        store.knowledge_text(999)
    other = store.create_run("other")
    assert store.knowledge_version(newest, run_id=run_id)["text"] == "new"
    with pytest.raises(StoreError, match="belongs to another run"):
        store.knowledge_version(newest, run_id=other)


def test_candidate_distributions_round_trip_and_text_steps_stay_null(store):
    steps = make_steps(2)
    steps[0].candidates = CandidateDistribution(["[up]", "[down]"], [[1, 2], [3]], [-0.1, -2.4], 0, 0.7)
    episode = store.write_episode({**HEADER, "action_mode": "scored"}, steps, RESULT)
    df = queries.transcript(store, episode)
    assert df["candidates"].tolist() == [steps[0].candidates.to_json(), None]
    assert CandidateDistribution.from_json(df["candidates"][0]) == steps[0].candidates
    assert store.read_only_sql("SELECT count(*) FROM steps WHERE candidates IS NULL").iloc[0, 0] == 1
    assert queries.episodes(store, action_mode="scored")["id"].tolist() == [episode]
