"""What benchmarks use of memory so that they touch no SQL themselves: the ORM baseline, scratch schemas."""

from __future__ import annotations

import pytest
from store_helpers import make_steps

from memory import queries
from memory.orm_baseline import write_episodes_orm
from memory.store import ExperienceStore, StoreError


def test_the_orm_baseline_writes_complete_episodes_that_read_back_exactly(store: ExperienceStore) -> None:
    header = {"env_id": "oel/A-v0", "task_id": "t", "split": "train", "run_id": None}
    write_episodes_orm(store, (({**header, "seed": k}, make_steps(3, tag=k)) for k in range(2)))
    episodes = queries.episodes(store)
    assert list(episodes["seed"]) == [0, 1] and set(episodes["status"]) == {"complete"}
    steps = queries.transcript(store, int(episodes["id"].iloc[1]))
    expected = make_steps(3, tag=1)
    assert list(steps["state"]) == [s.state for s in expected]
    assert list(steps["prompt_ids"]) == [s.prompt_ids for s in expected]
    assert list(steps["logprobs"]) == [s.logprobs for s in expected]


def test_a_scratch_schema_holds_a_fresh_store_and_is_dropped_after(pg_base_url: str, pg_url: str) -> None:
    with ExperienceStore.scratch_schema(pg_base_url, prefix="oel_test_scratch") as url:
        with ExperienceStore.open(url) as store:
            run = store.create_run("scratch")
            store.analyze()
            assert list(queries.runs(store)["id"]) == [run]
        schema = url.rpartition("%3D")[2]
    with ExperienceStore.open(pg_url) as observer:  # any store on the server sees its catalog
        left = observer.read_only_sql(f"SELECT count(*) FROM pg_namespace WHERE nspname = '{schema}'")
    assert schema.startswith("oel_test_scratch_") and int(left.iloc[0, 0]) == 0


def test_scratch_schemas_refuse_sqlite_and_odd_prefixes(tmp_path) -> None:
    sqlite = f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(StoreError, match="need PostgreSQL"), ExperienceStore.scratch_schema(sqlite):
        pass
    odd = ExperienceStore.scratch_schema("postgresql://h/db", prefix='x"; DROP')
    with pytest.raises(StoreError, match="identifier"), odd:
        pass
