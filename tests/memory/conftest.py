"""Fixtures for the store tests: every store test runs on SQLite AND PostgreSQL.

The PostgreSQL fixtures themselves (`pg_base_url`, `pg_url`: one fresh schema per
test) live in tests/conftest.py, shared with the Ray tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from memory.store import ExperienceStore


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'oel.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(db_url: str) -> Iterator[ExperienceStore]:
    """An open store at head on each backend."""
    with ExperienceStore.open(db_url) as opened:
        yield opened
