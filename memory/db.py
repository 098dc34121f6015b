"""Engines for the experience store: URL resolution, SQLite tuning, lock retries.

Why it is shaped so:
- One place turns a URL (or `$OEL_DB_URL`, or the default `sqlite:///oel.db` in
  the working directory) into a SQLAlchemy engine, and turns every way that can
  go wrong (malformed URL, unknown dialect, missing directory, server down) into
  a one-line `StoreError`.
- SQLite is tuned for many concurrent writer processes: WAL (readers never
  block the writer), `synchronous=NORMAL` (durable at checkpoints, fast
  commits), a busy timeout, and foreign keys on. Write transactions start with
  `BEGIN IMMEDIATE`: a deferred transaction that upgrades from read to write can
  fail with "database is locked" without waiting, while IMMEDIATE takes the
  write lock up front and so waits in SQLite's busy handler. pysqlite's own
  transaction handling is switched off so that our BEGIN is the one issued.
- Whatever still comes back as "database is locked" is retried with
  exponential backoff by `retry_locked`, so a user never sees it.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError

from memory.errors import StoreError

DEFAULT_URL = "sqlite:///oel.db"
ENV_VAR = "OEL_DB_URL"
SQLITE_BUSY_TIMEOUT_MS = 10_000
LOCK_RETRY_DEADLINE_S = 300.0
PG_CONNECT_TIMEOUT_S = 10

T = TypeVar("T")


def resolve_url(url: str | None) -> str:
    """The URL to use: the given one, else `$OEL_DB_URL`, else `sqlite:///oel.db` in the working directory."""
    return url or os.environ.get(ENV_VAR) or DEFAULT_URL


def describe(url: URL) -> str:
    """A URL rendered for messages, with any password hidden."""
    return url.render_as_string(hide_password=True)


def parse_url(url: str) -> URL:
    """Parse a database URL, naming the problem when it is malformed or of an unsupported kind."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(
            f"not a database URL: {url!r} (expected e.g. sqlite:///oel.db or postgresql+psycopg://user@host/db)"
        ) from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(
            f"unsupported database {parsed.get_backend_name()!r} in {describe(parsed)}: use sqlite:///PATH "
            "or postgresql+psycopg://user@host:port/db"
        )
    return parsed


def _sqlite_file(url: URL) -> Path | None:
    """The file behind a SQLite URL, or None for an in-memory database."""
    if url.database in (None, "", ":memory:") or url.database.startswith("file:"):
        return None
    return Path(url.database)


def make_engine(url: str, read_only: bool = False, **engine_kwargs: Any) -> Engine:
    """Create an engine for `url` and check that the database can be reached.

    `read_only`: every connection refuses writes, enforced by the database
    (SQLite's `query_only`, PostgreSQL's read-only session), and a SQLite file
    that does not exist is an error rather than created.
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = _sqlite_file(parsed)
        if path is not None and not path.parent.exists():
            raise StoreError(f"cannot open {describe(parsed)}: directory {str(path.parent)!r} does not exist")
        if read_only and path is not None and not path.is_file():
            raise StoreError(f"cannot open {describe(parsed)} read-only: there is no such database file")
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        engine_kwargs.setdefault("connect_args", {}).setdefault("connect_timeout", PG_CONNECT_TIMEOUT_S)
    try:
        engine = create_engine(parsed, **engine_kwargs)
    except (NoSuchModuleError, ImportError) as exc:
        raise StoreError(f"no database driver for {describe(parsed)}: {exc}") from None
    except ArgumentError as exc:
        raise StoreError(f"bad database URL {describe(parsed)}: {exc}") from None
    if engine.dialect.name == "sqlite":
        _tune_sqlite(engine)
    if read_only:
        _refuse_writes(engine)
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        engine.dispose()
        raise StoreError(f"cannot connect to {describe(parsed)}: {first_line(exc)}") from None
    return engine


def first_line(exc: BaseException) -> str:
    """The driver's own message of a database exception, first line only."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__


def _tune_sqlite(engine: Engine) -> None:
    """WAL, synchronous=NORMAL, busy timeout, foreign keys, and our own BEGIN statements."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, see below
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS:d}")
        if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            _retry_pragma(cur, "PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _refuse_writes(engine: Engine) -> None:
    """Make every new connection of `engine` read-only, in the database itself."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        if engine.dialect.name == "sqlite":
            cur.execute("PRAGMA query_only = ON")
        else:
            cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            dbapi_conn.commit()
        cur.close()


def _retry_pragma(cur: Any, sql: str) -> None:
    """Switching to WAL needs a moment of exclusive access; wait for it like any other lock."""
    deadline = time.monotonic() + LOCK_RETRY_DEADLINE_S
    delay = 0.01
    while True:
        try:
            cur.execute(sql)
            return
        except Exception as exc:  # sqlite3.OperationalError; the driver module is not imported here
            if not _is_locked(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay * (1 + random.random()))
        delay = min(delay * 2, 1.0)


def _is_locked(exc: BaseException) -> bool:
    """Whether an exception is SQLite's transient "database is locked/busy"."""
    text = str(getattr(exc, "orig", None) or exc).lower()
    return "database is locked" in text or "database is busy" in text or "database table is locked" in text


def retry_locked(fn: Callable[[], T], deadline_s: float = LOCK_RETRY_DEADLINE_S) -> T:
    """Run `fn` (one whole transaction), retrying with jittered exponential backoff while SQLite is locked."""
    deadline = time.monotonic() + deadline_s
    delay = 0.01
    while True:
        try:
            return fn()
        except OperationalError as exc:
            if not _is_locked(exc):
                raise
            if time.monotonic() > deadline:
                message = f"database stayed locked for {deadline_s:.0f} s: {first_line(exc)}"
                raise StoreError(message) from None
        time.sleep(delay * (1 + random.random()))
        delay = min(delay * 2, 1.0)
