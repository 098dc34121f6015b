"""Schema migrations on both backends: first revision -> head, models == migrated schema, revision policy."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime

import pytest
import setuptools
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, select, text
from store_helpers import writer_cmd

from memory import migrate, queries
from memory.db import make_engine
from memory.models import Base
from memory.store import ExperienceStore, StoreError

NOW = datetime.now(UTC)


def test_upgrade_from_first_revision_to_head_keeps_data(db_url: str) -> None:
    first = migrate.first_revision()
    assert first != migrate.head_revision(), "with one revision there is no upgrade path to test"
    engine = make_engine(db_url)
    runs, episodes = Base.metadata.tables["runs"], Base.metadata.tables["episodes"]
    with engine.begin() as conn:
        migrate.upgrade(conn, first)
        run = conn.execute(insert(runs).returning(runs.c.id), {"name": "old", "created_at": NOW}).scalar_one()
        conn.execute(
            insert(episodes),
            {"run_id": run, "env_id": "e", "task_id": "t", "seed": 1, "split": "train", "status": "complete",
             "won": True, "total_return": 1.0, "n_steps": 0, "n_tokens": 0, "started_at": NOW},
        )  # fmt: skip
    engine.dispose()

    with pytest.raises(StoreError, match="run `oel store upgrade"):
        ExperienceStore.open(db_url)
    assert ExperienceStore.upgrade(db_url) == (first, migrate.head_revision())
    with ExperienceStore.open(db_url) as store:
        assert store.revision() == migrate.head_revision()
        assert store.get_run("old") == run
        assert queries.success_rate(store, by=()).loc[0, "success_rate"] == 1.0
        round_id = store.start_round(run, 0)
        store.complete_phase(store.begin_phase(round_id, "collect"))  # the table the later revision added
        assert set(store.phase_results(round_id)) == {"collect"}
    assert ExperienceStore.upgrade(db_url) == (migrate.head_revision(), migrate.head_revision())


def test_round_statuses_of_0005_become_phase_names(db_url: str) -> None:
    engine = make_engine(db_url)
    runs = Base.metadata.tables["runs"]
    with engine.begin() as conn:
        migrate.upgrade(conn, "0005")
        run = conn.execute(insert(runs).returning(runs.c.id), {"name": "old", "created_at": NOW}).scalar_one()
        for idx, status in enumerate(("collecting", "evaluating", "done")):
            conn.execute(
                text(
                    "INSERT INTO rounds (run_id, idx, status, created_at, updated_at) "
                    "VALUES (:r, :i, :s, :t, :t)"
                ),
                {"r": run, "i": idx, "s": status, "t": NOW},
            )
    engine.dispose()
    ExperienceStore.upgrade(db_url)
    with ExperienceStore.open(db_url) as store:
        assert queries.rounds(store, run)["status"].tolist() == ["collect", "evaluate", "done"]
        round_id = int(queries.rounds(store, run)["id"][0])
        store.complete_phase(store.begin_phase(round_id, "extract"))  # a migrated round moves on
        assert store.round_status(round_id) == "extract"


def test_migrated_schema_matches_the_models(store: ExperienceStore) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_unknown_newer_revision_is_refused(store: ExperienceStore) -> None:
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    with pytest.raises(StoreError, match="unknown to this oel.*newer oel") as info:
        ExperienceStore.open(store.url)
    assert "\n" not in str(info.value)
    with pytest.raises(StoreError, match="9999_from_the_future"):
        ExperienceStore.upgrade(store.url)


def test_foreign_tables_without_a_revision_are_not_touched(db_url: str) -> None:
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE runs (id INTEGER PRIMARY KEY, owner TEXT)"))
        conn.execute(text("INSERT INTO runs (id, owner) VALUES (1, 'someone else')"))
    with pytest.raises(StoreError, match="no schema revision"):
        ExperienceStore.open(db_url)
    with engine.connect() as conn:
        assert conn.execute(select(text("owner")).select_from(text("runs"))).scalar() == "someone else"
    engine.dispose()


def test_writers_racing_to_create_a_fresh_database(db_url: str) -> None:
    procs = [
        subprocess.Popen(writer_cmd("batch", db_url, str(w), "2"), stderr=subprocess.PIPE, text=True)
        for w in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with ExperienceStore.open(db_url) as store:
        assert len(queries.episodes(store)) == 6
        assert store.revision() == migrate.head_revision()


def test_migration_scripts_ship_inside_the_package() -> None:
    packages = setuptools.find_packages(
        where=str(migrate.__file__).rsplit("/memory/", 1)[0], include=["memory*"]
    )
    assert {"memory.migrations", "memory.migrations.versions"} <= set(packages)
    chain = list(migrate.scripts().walk_revisions())
    assert chain[-1].down_revision is None and len(migrate.scripts().get_heads()) == 1
