"""What a consolidation job writes in the experience store when it starts and when it finishes.

When a job starts in a fresh folder, `open_record` resolves what "default"
means for it (the start checkpoint is the one the round was played with, the
teacher a copy of the start, the knowledge the run's latest version), opens
the consolidation row, and returns the job record (`distill.checkpointing.
JobRecord`) that job.json keeps, so a resumed run never resolves them again.
When it ends, `register_final` registers the final folder as a checkpoint
with its lineage and closes the row. The shell (`distill.job`) calls both;
the store's own writes live in `memory.consolidations` and `memory.runs`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.model import resolve_model_path
from distill.checkpointing import JobRecord
from distill.data import round_checkpoint_path, round_steps
from distill.errors import ConsolidationError
from distill.job_config import JobConfig
from memory.store import ExperienceStore


def open_record(
    store: ExperienceStore, config: JobConfig, run_id: int, settings: dict[str, Any], uses_knowledge: bool
) -> JobRecord:
    """Resolve a new job's start, teacher and knowledge, open its consolidation row, return its record."""
    start = config.model
    if start is None:
        try:
            start = round_checkpoint_path(store, round_steps(store, config.run, config.round, config.split))
        except ConsolidationError:  # no logged round (an RL job may run without one)
            start = None
    start_path = str(resolve_model_path(start))
    teacher_path = str(resolve_model_path(config.teacher)) if config.teacher else start_path
    knowledge_id = config.knowledge
    if uses_knowledge:
        if knowledge_id is None:
            latest = store.latest_knowledge_version(run_id)
            if latest is None:
                raise ConsolidationError(
                    f"run {config.run!r} has no knowledge version; run `oel knowledge extract` or "
                    "`oel knowledge add` first, or pass --knowledge VERSION"
                )
            knowledge_id = latest[0]
        store.knowledge_version(knowledge_id, run_id=run_id)  # a clear error for a bad id
    elif knowledge_id is not None:
        why = "it uses no knowledge"
        if not config.teacher_knowledge:
            why = "its teacher reads no knowledge (teacher_knowledge = false)"
        raise ConsolidationError(f"method {config.method!r} takes no --knowledge here: {why}")
    round_id = store.start_round(run_id, config.round)
    parent_id = store.checkpoint_for_path(start_path, run_id=run_id)
    hparams = {**settings, "start_path": start_path, "teacher_path": teacher_path}
    consolidation_id = store.start_consolidation(
        run_id=run_id, round_id=round_id, method=config.method, hparams=hparams,
        knowledge_version_id=knowledge_id, parent_checkpoint_id=parent_id,
    )  # fmt: skip
    return JobRecord(
        settings=settings, consolidation_id=consolidation_id, run_id=run_id, round_id=round_id,
        parent_checkpoint_id=parent_id, knowledge_version_id=knowledge_id, start_path=start_path,
        teacher_path=teacher_path, hparams=hparams,
    )  # fmt: skip


def register_final(
    store: ExperienceStore, record: JobRecord, out: Path, method: str, fmt: str, bits: float | None
) -> int:
    """Register the final folder `out` as a checkpoint with its lineage, close the row; the checkpoint id."""
    validation = record.validation
    checkpoint_id = store.register_checkpoint(
        path=str(out.resolve()), parent_id=record.parent_checkpoint_id, run_id=record.run_id,
        round_id=record.round_id, method=method, fmt=fmt, bits_per_weight=bits,
        meta={"hparams": record.hparams, "consolidation_id": record.consolidation_id,
              "knowledge_version_id": record.knowledge_version_id,
              "validation": None if validation is None else vars(validation).copy(),
              "teacher_gap": record.teacher_gap},
    )  # fmt: skip
    store.finish_consolidation(record.consolidation_id, checkpoint_id)
    return checkpoint_id
