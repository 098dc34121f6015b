"""Schema migrations, run programmatically from the migration scripts shipped in this package.

The scripts live in `memory/migrations/` (env.py, script.py.mako, versions/)
and are found as the package resource `memory:migrations`, so an installed
wheel migrates without an alembic.ini or a checkout. Migrations always run on
a connection we hand over (through `Config.attributes`), so they see exactly
the engine settings the store uses: SQLite pragmas, a PostgreSQL search_path
given in the URL, and our transaction.

Policy (see `ExperienceStore.open`): an empty database is created at head
automatically; an older one is only migrated by `oel store upgrade`, since
changing a shared database's schema under other running writers should be a
deliberate act; a revision we do not know (written by a newer oel) is refused.

To add a revision after changing `memory/models.py`, run
`python -m memory.migrate revision "what changed" --db sqlite:///scratch.db`
against a database at head; review the generated file before committing.
"""

from __future__ import annotations

import sys

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

SCRIPT_LOCATION = "memory:migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    """An in-memory Alembic config pointing at the packaged scripts, optionally bound to a connection."""
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def scripts() -> ScriptDirectory:
    """The packaged migration scripts."""
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The revision the code's models correspond to."""
    head = scripts().get_current_head()
    assert head is not None, "the packaged migrations have no head"
    return head


def first_revision() -> str:
    """The first revision, which creates the schema from nothing."""
    base = scripts().get_base()
    assert base is not None, "the packaged migrations have no base"
    return base


def known_revisions() -> set[str]:
    """Every revision id this version of the code can migrate from or to."""
    return {rev.revision for rev in scripts().walk_revisions()}


def current_revision(connection: Connection) -> str | None:
    """The revision stamped in the database, or None when it has none."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Connection, target: str = "head") -> None:
    """Migrate the database behind `connection` up to `target` (inside the caller's transaction)."""
    command.upgrade(alembic_config(connection), target)


def _revision_main(argv: list[str]) -> None:
    """Developer entry point: autogenerate a new revision from the models (see module docstring).

    The database must be at head already (open it once with `oel store upgrade`).
    """
    from memory.db import make_engine

    if len(argv) != 3 or argv[0] != "revision" or not argv[2].startswith("--db="):
        sys.exit('usage: python -m memory.migrate revision "message" --db=URL')
    engine = make_engine(argv[2].removeprefix("--db="))
    with engine.begin() as conn:
        if current_revision(conn) != head_revision():
            sys.exit("the database is not at head; run `oel store upgrade --db URL` first")
        command.revision(alembic_config(conn), message=argv[1], autogenerate=True)
    engine.dispose()


if __name__ == "__main__":
    _revision_main(sys.argv[1:])
