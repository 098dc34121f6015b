"""The experience store: one handle on one database, its schema check, and its transactions.

`ExperienceStore` is the only object that talks to the database. This module
holds what every aggregate shares: opening (URL, engine, schema revision),
the public write transaction (`transaction`) and read connection (`reading`),
the read-only ad-hoc SQL of `oel store sql`, and the database-level chores
benchmarks need without touching SQL themselves (`scratch_schema`: a fresh
PostgreSQL schema on a shared server; `analyze`). The writes themselves are
grouped by aggregate, one module each, and mixed into the store class:

- `memory.runs`: runs and checkpoints (lineage);
- `memory.episodes`: episodes and their steps, written whole;
- `memory.knowledge_records`: knowledge items, their provenance, versions;
- `memory.consolidations`: consolidation jobs and their per-step metrics;
- `memory.rounds`: rounds, their phase jobs (one state machine) and deployments.

The read API is `memory.queries` (DataFrames and small records; the reads
are grouped by aggregate too, in `memory.*_reads`). Nothing
outside `memory` imports SQLAlchemy or `memory.models` (docs/architecture.md).

Many writers: every write is one short transaction run through
`retry_locked`, and on SQLite starts with BEGIN IMMEDIATE (see `memory.db`),
so several processes writing at once wait for each other instead of failing.
On PostgreSQL the same code runs under its row locking.

Schema versions (see `memory.migrate`): `open` creates an empty database at
head, refuses a database at a revision it does not know (a newer oel wrote
it), and asks for `oel store upgrade` on an older one rather than migrating a
shared database behind other writers' backs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, Engine, func, insert, inspect, select, text
from sqlalchemy.exc import DBAPIError

from memory import migrate
from memory.consolidations import ConsolidationRecords
from memory.db import describe, first_line, make_engine, parse_url, resolve_url, retry_locked
from memory.episodes import EpisodeRecords
from memory.errors import StoreError
from memory.knowledge_records import KnowledgeRecords
from memory.models import Base
from memory.rounds import RoundRecords
from memory.runs import RunRecords

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ExperienceStore", "StoreError"]

T = TypeVar("T")

_MIGRATION_LOCK_KEY = 0x0E1_5701  # PostgreSQL advisory lock serialising schema creation


class ExperienceStore(RunRecords, EpisodeRecords, KnowledgeRecords, ConsolidationRecords, RoundRecords):
    """A handle on one experience database; open it with `ExperienceStore.open(url)`."""

    def __init__(self, engine: Engine, url: str) -> None:
        """Wrap an engine made by `memory.db.make_engine`; prefer `ExperienceStore.open`."""
        self.engine = engine
        self.url = url
        self._writer = engine.execution_options(sqlite_immediate=True)

    # ------------------------------------------------------------------ opening and schema

    @classmethod
    def open(
        cls, url: str | None = None, *, upgrade: bool = False, read_only: bool = False
    ) -> ExperienceStore:
        """Open the store at `url` (None: `$OEL_DB_URL`, else `sqlite:///oel.db` in the working directory).

        A new, empty database is created at the current schema. An older
        schema raises StoreError asking for `oel store upgrade`, unless
        `upgrade=True`; an unknown (newer) revision always raises.
        `read_only`: the database itself refuses every write on this handle
        (for viewers such as `oel ui`); the schema must be at head already.
        """
        resolved = resolve_url(url)
        engine = make_engine(resolved, read_only=read_only)
        store = cls(engine, resolved)
        try:
            if read_only:
                current = store.revision()
                if current != migrate.head_revision():
                    head = migrate.head_revision()
                    raise StoreError(
                        f"{store.where()} is at schema revision {current!r}, not {head!r}: "
                        f"run `oel store upgrade --db {store.where()}` first"
                    )
                return store
            store._ensure_schema(upgrade)
        except BaseException:
            engine.dispose()
            raise
        return store

    @classmethod
    def upgrade(cls, url: str | None = None) -> tuple[str | None, str]:
        """Migrate the database at `url` to the current schema; return (revision before, revision after)."""
        resolved = resolve_url(url)
        engine = make_engine(resolved)
        try:
            with engine.connect() as conn:
                before = migrate.current_revision(conn)
            cls(engine, resolved)._ensure_schema(upgrade=True)
        finally:
            engine.dispose()
        return before, migrate.head_revision()

    @staticmethod
    @contextmanager
    def scratch_schema(base_url: str, prefix: str = "oel_scratch") -> Iterator[str]:
        """A URL on the PostgreSQL server at `base_url` whose search_path is a new, empty schema.

        The schema is dropped with everything in it on exit. For benchmarks that
        want a fresh store on a shared server without touching its other tables;
        StoreError when the server cannot be reached.
        """
        if not prefix.isidentifier():
            raise StoreError(f"a scratch schema's prefix must be an identifier, not {prefix!r}")
        if parse_url(base_url).get_backend_name() != "postgresql":
            raise StoreError(f"scratch schemas need PostgreSQL, not {describe(parse_url(base_url))}")
        schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
        admin = make_engine(base_url)
        try:
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            sep = "&" if "?" in base_url else "?"
            try:
                yield f"{base_url}{sep}options=-csearch_path%3D{schema}"
            finally:
                with admin.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        finally:
            admin.dispose()

    def close(self) -> None:
        """Release the store's connections."""
        self.engine.dispose()

    def __enter__(self) -> ExperienceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.engine.dialect.name

    def where(self) -> str:
        """The database URL for messages, password hidden."""
        return describe(parse_url(self.url))

    def revision(self) -> str | None:
        """The schema revision stamped in the database."""
        with self.engine.connect() as conn:
            return migrate.current_revision(conn)

    def _ensure_schema(self, upgrade: bool) -> None:
        """Check the revision; create or migrate under a write lock when needed (see `open`)."""
        head = migrate.head_revision()
        try:
            with self.engine.connect() as conn:
                if migrate.current_revision(conn) == head:
                    return
            self.transaction(lambda conn: self._migrate_locked(conn, head, upgrade))
        except DBAPIError as exc:
            raise StoreError(f"cannot read the schema of {self.where()}: {first_line(exc)}") from None

    def _migrate_locked(self, conn: Connection, head: str, upgrade: bool) -> None:
        """Inside the write transaction: re-read the revision (another process may have won), then act."""
        if conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK_KEY)))
        current = migrate.current_revision(conn)
        if current == head:
            return
        if current is None:
            ours = set(inspect(conn).get_table_names()) & set(Base.metadata.tables)
            if ours:
                raise StoreError(
                    f"{self.where()} has store tables ({', '.join(sorted(ours))}) but no schema revision; "
                    "it was not created by oel, refusing to touch it"
                )
        elif current not in migrate.known_revisions():
            raise StoreError(
                f"{self.where()} is at schema revision {current!r}, unknown to this oel (head {head!r}); "
                "it was written by a newer oel: upgrade oel"
            )
        elif not upgrade:
            raise StoreError(
                f"{self.where()} is at schema revision {current!r}, older than {head!r}: "
                f"run `oel store upgrade --db {self.where()}`"
            )
        migrate.upgrade(conn)

    # ------------------------------------------------------------------ transactions

    def transaction(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn(conn)` as ONE write transaction and return its result.

        The whole function is retried while SQLite reports a lock, so `fn`
        must only touch the database (no side effects it cannot repeat).
        """

        def attempt() -> T:
            with self._writer.begin() as conn:
                return fn(conn)

        return retry_locked(attempt)

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for reads (one consistent snapshot on PostgreSQL only within a statement)."""
        with self.engine.connect() as conn:
            yield conn

    def scalar(self, stmt: Any) -> Any:
        """Run a read statement and return its single value (or None)."""
        with self.reading() as conn:
            return conn.execute(stmt).scalar_one_or_none()

    @staticmethod
    def insert_row(conn: Connection, model: type[Base], **values: Any) -> int:
        """Insert one row of `model` inside a transaction and return its id."""
        table = model.__table__
        return conn.execute(insert(table).returning(table.c.id), values).scalar_one()

    def analyze(self) -> None:
        """Refresh the query planner's statistics (ANALYZE), as autovacuum would on a long-lived database."""
        self.transaction(lambda conn: conn.exec_driver_sql("ANALYZE"))

    # ------------------------------------------------------------------ ad-hoc SQL

    def read_only_sql(self, sql: str) -> pd.DataFrame:
        """Run ONE statement on a read-only transaction and return its rows; the database refuses writes.

        SQLite: `PRAGMA query_only` on the connection, and sqlite3 runs one
        statement per call. PostgreSQL: `SET TRANSACTION READ ONLY`, and the
        statement goes through a prepared statement, which cannot hold a
        second statement (so a `COMMIT; INSERT ...` cannot escape).
        """
        import pandas as pd  # lazily: writer processes never need it

        raw = self.engine.raw_connection()
        sqlite = self.dialect == "sqlite"
        try:
            cur = raw.cursor()
            if sqlite:
                cur.execute("PRAGMA query_only = ON")
                cur.execute("BEGIN")
                cur.execute(sql)
            else:
                cur.execute("SET TRANSACTION READ ONLY")
                cur.execute(sql, prepare=True)
            columns = [d[0] for d in cur.description] if cur.description else []
            rows = cur.fetchall() if cur.description else []
        except Exception as exc:  # the driver's own error class; both drivers' messages are clear
            raise StoreError(f"query failed: {first_line(exc)}") from None
        finally:
            raw.rollback()
            if sqlite:
                raw.cursor().execute("PRAGMA query_only = OFF")
            raw.close()
        return pd.DataFrame.from_records(rows, columns=columns)
