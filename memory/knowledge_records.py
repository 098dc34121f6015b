"""Writes of the knowledge aggregate: items with their provenance, votes, and rendered versions.

An item is one short rule or strategy. Its provenance is either the episodes
it was extracted from (`knowledge_item_sources`, with the extractor's
checkpoint and prompt version) or the person who wrote it (`author`, no
episodes: `oel knowledge add`). A version is the rendered text that was put in
a prompt, with the ordered items it was made of; every episode and every
consolidation records the version it used, so any pass rate can be traced
back to the items and from there to the episodes they came from.

Version kinds: `extracted` (rendered items), `authored` (a person's file,
parsed into items), `raw` (raw trajectories pasted as context, the baseline;
no items, never deployed or distilled by default), `outcomes` (a step-level
outcome table built from trajectories, `distill.credit`: one item per state
with the episodes it was drawn from; training data, never put in a prompt).

Mixed into `memory.store.ExperienceStore`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from memory.db import first_line
from memory.errors import StoreError
from memory.models import KnowledgeItem, KnowledgeItemSource, KnowledgeVersion, KnowledgeVersionItem

VERSION_KINDS = ("extracted", "authored", "raw", "outcomes")
DISTILLABLE_KINDS = ("extracted", "authored")
"""Kinds `latest_knowledge_version` considers by default: knowledge, not the raw-trajectory baseline."""


class KnowledgeRecords:
    """Knowledge items, votes and versions."""

    def add_knowledge_item(
        self,
        *,
        run_id: int,
        round_id: int | None,
        text: str,
        source_episode_ids: Sequence[int] = (),
        extractor_checkpoint_id: int | None = None,
        prompt_version: str = "v1",
        votes: int = 1,
        author: str | None = None,
    ) -> int:
        """Record one knowledge item with the episodes it came from (or its author); return its id.

        `votes` is how many trajectories support it (more than 1 when several
        episodes of one extraction batch produced near-identical items).
        """
        item = {
            "run_id": run_id, "round_id": round_id, "text": text,
            "extractor_checkpoint_id": extractor_checkpoint_id, "prompt_version": prompt_version,
            "votes": votes, "author": author,
        }  # fmt: skip

        def do(conn: Connection) -> int:
            item_id = self.insert_row(conn, KnowledgeItem, **item)
            sources = [{"item_id": item_id, "episode_id": e} for e in dict.fromkeys(source_episode_ids)]
            if sources:
                conn.execute(insert(KnowledgeItemSource.__table__), sources)
            return item_id

        try:
            return self.transaction(do)
        except IntegrityError as exc:
            raise StoreError(f"cannot record knowledge item: {first_line(exc)}") from None

    def add_knowledge_version(
        self,
        *,
        run_id: int,
        round_id: int | None,
        text: str,
        item_ids: Sequence[int],
        n_tokens: int,
        kind: str = "extracted",
        meta: dict | None = None,
    ) -> int:
        """Record a rendered knowledge snapshot made of `item_ids` (in order); return its id.

        `kind` is one of VERSION_KINDS; `meta` says how it was made.
        """
        if kind not in VERSION_KINDS:
            raise StoreError(
                f"knowledge version kind must be one of {', '.join(VERSION_KINDS)}, got {kind!r}"
            )

        def do(conn: Connection) -> int:
            version_id = self.insert_row(
                conn, KnowledgeVersion, run_id=run_id, round_id=round_id, text=text,
                n_items=len(item_ids), n_tokens=n_tokens, kind=kind, meta=meta,
            )  # fmt: skip
            links = [{"version_id": version_id, "item_id": i, "position": p} for p, i in enumerate(item_ids)]
            if links:
                conn.execute(insert(KnowledgeVersionItem.__table__), links)
            return version_id

        try:
            return self.transaction(do)
        except IntegrityError as exc:
            raise StoreError(f"cannot record knowledge version: {first_line(exc)}") from None

    def record_outcomes(
        self, *, run_id: int, round_id: int | None, items: Sequence[tuple[str, Sequence[int]]],
        meta: dict | None = None,
    ) -> int:  # fmt: skip
        """Record an outcome table as items (text, source episode ids) and one `outcomes` version, in ONE
        transaction (hundreds of states); return the version id."""

        def do(conn: Connection) -> int:
            item_ids = []
            sources = []
            for text, episodes in items:
                item_id = self.insert_row(conn, KnowledgeItem, run_id=run_id, round_id=round_id, text=text,
                                          votes=len(set(episodes)), prompt_version="outcomes")  # fmt: skip
                item_ids.append(item_id)
                sources += [{"item_id": item_id, "episode_id": e} for e in dict.fromkeys(episodes)]
            if sources:
                conn.execute(insert(KnowledgeItemSource.__table__), sources)
            text = "\n\n".join(text for text, _episodes in items)
            version_id = self.insert_row(
                conn, KnowledgeVersion, run_id=run_id, round_id=round_id, text=text, n_items=len(item_ids),
                n_tokens=len(text) // 4, kind="outcomes", meta=meta,
            )  # fmt: skip
            links = [{"version_id": version_id, "item_id": i, "position": p} for p, i in enumerate(item_ids)]
            if links:
                conn.execute(insert(KnowledgeVersionItem.__table__), links)
            return version_id

        try:
            return self.transaction(do)
        except IntegrityError as exc:
            raise StoreError(f"cannot record the outcome table: {first_line(exc)}") from None

    def knowledge_text(self, version_id: int) -> str:
        """The rendered text of knowledge version `version_id`; StoreError if there is none."""
        text = self.scalar(select(KnowledgeVersion.text).where(KnowledgeVersion.id == version_id))
        if text is None:
            raise StoreError(f"there is no knowledge version {version_id}")
        return text

    def knowledge_version(self, version_id: int, *, run_id: int | None = None) -> dict[str, Any]:
        """A version's row (id, run_id, round_id, kind, text, n_items, n_tokens, meta).

        With `run_id`, a version of another run is refused: knowledge is
        per run, and mixing runs silently would make provenance lie.
        """
        with self.reading() as conn:
            row = conn.execute(
                select(KnowledgeVersion.__table__).where(KnowledgeVersion.id == version_id)
            ).first()
        if row is None:
            raise StoreError(f"there is no knowledge version {version_id}")
        version = dict(row._mapping)
        if run_id is not None and version["run_id"] != run_id:
            raise StoreError(
                f"knowledge version {version_id} belongs to another run (run id {version['run_id']}, "
                f"not {run_id}); `oel knowledge show --run NAME` lists a run's versions"
            )
        return version

    def agree_knowledge_item(self, item_id: int, source_episode_ids: Sequence[int]) -> int:
        """AGREE: more trajectories support an item; link the new ones and add a vote each.

        Episodes already linked to the item add nothing, so re-running an
        extraction over the same episodes does not inflate votes. Return the
        item's votes afterwards.
        """

        def do(conn: Connection) -> int:
            if conn.execute(select(KnowledgeItem.id).where(KnowledgeItem.id == item_id)).scalar() is None:
                raise StoreError(f"there is no knowledge item {item_id}")
            linked = set(
                conn.execute(
                    select(KnowledgeItemSource.episode_id).where(KnowledgeItemSource.item_id == item_id)
                ).scalars()
            )
            new = [e for e in dict.fromkeys(source_episode_ids) if e not in linked]
            if new:
                conn.execute(
                    insert(KnowledgeItemSource.__table__),
                    [{"item_id": item_id, "episode_id": e} for e in new],
                )
                conn.execute(
                    update(KnowledgeItem)
                    .where(KnowledgeItem.id == item_id)
                    .values(votes=KnowledgeItem.votes + len(new))
                )
            return conn.execute(select(KnowledgeItem.votes).where(KnowledgeItem.id == item_id)).scalar_one()

        try:
            return self.transaction(do)
        except IntegrityError as exc:
            raise StoreError(f"cannot add votes to knowledge item {item_id}: {first_line(exc)}") from None

    def latest_knowledge_version(
        self, run_id: int, kinds: Sequence[str] | None = DISTILLABLE_KINDS, *, round_id: int | None = None
    ) -> tuple[int, str] | None:
        """(id, text) of the run's newest knowledge version of one of `kinds` (None: any), or None.

        By default extracted and authored versions count, so a raw-trajectory
        baseline stored by `oel eval` never becomes the knowledge that is
        deployed or distilled. `round_id` narrows it to one round's versions.
        """
        stmt = (
            select(KnowledgeVersion.id, KnowledgeVersion.text)
            .where(KnowledgeVersion.run_id == run_id)
            .order_by(KnowledgeVersion.id.desc())
            .limit(1)
        )
        if kinds is not None:
            stmt = stmt.where(KnowledgeVersion.kind.in_(list(kinds)))
        if round_id is not None:
            stmt = stmt.where(KnowledgeVersion.round_id == round_id)
        with self.reading() as conn:
            row = conn.execute(stmt).first()
        return (row.id, row.text) if row else None
