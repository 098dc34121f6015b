"""Shared test settings and model fixtures: few tokenizer threads, the real SmolLM2, tiny random Llamas.

The real model is converted into the shared cache (`$OEL_CACHE_DIR` or
~/.cache/oel) on the first run of any session (~30 s) and reused afterwards;
the tiny models (`tiny_models.py`: SmolLM2's tokenizer, 2 layers of width
128) live in a per-session temp folder. Agent and distill tests both use them.

PostgreSQL (default postgresql+psycopg://postgres@127.0.0.1:5432/test, override
with $OEL_TEST_PG_URL) is shared, so each test that wants it gets its own freshly
created schema, put first on the search_path through the URL's `options`, and
dropped afterwards. When the server is unreachable those tests are skipped with
the reason, except under CI (env CI set), where that is a failure. The store
tests and the Ray tests use it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError

from memory.store import ExperienceStore

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PG_URL = os.environ.get("OEL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_unavailable() -> str | None:
    """Why PostgreSQL cannot be used, or None when it can."""
    try:
        engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except OperationalError as exc:
        return f"PostgreSQL at {PG_URL} unreachable: {str(exc.orig).splitlines()[0]}"
    return None


@pytest.fixture(scope="session")
def pg_base_url() -> str:
    """The PostgreSQL server URL; skip (or, under CI, fail) when it is down."""
    reason = _pg_unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set, so PostgreSQL must be reachable)")
        pytest.skip(reason)
    return PG_URL


@pytest.fixture
def pg_url(pg_base_url: str) -> Iterator[str]:
    """A URL whose search_path is a new, empty schema of its own, dropped at teardown."""
    with ExperienceStore.scratch_schema(pg_base_url, "oel_test") as url:
        yield url


@pytest.fixture(scope="session")
def smollm_path() -> Path:
    from agent.model import default_model_path

    return default_model_path()


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory, smollm_path) -> Path:
    from tiny_models import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-a", smollm_path, seed=0)


@pytest.fixture(scope="session")
def tiny_path_b(tmp_path_factory, smollm_path) -> Path:
    from tiny_models import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-b", smollm_path, seed=1)
