"""Helpers for the loop tests: tiny run files, the `oel` command as a subprocess, store probes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from memory.models import Consolidation, ConsolidationStep, Episode, Phase, Round
from memory.store import ExperienceStore

REPO = Path(__file__).resolve().parents[2]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table of bare keys
        return "{ " + ", ".join(f"{key} = {_toml_value(v)}" for key, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


def write_run_file(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    """Write a flat run file (one table per section)."""
    lines = []
    for section, table in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def tiny_sections(tmp_path: Path, model: Path, **overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A one-round loop on a tiny model: seconds per phase."""
    sections: dict[str, dict[str, Any]] = {
        "run": {"name": "tiny", "rounds": 1, "model": str(model), "checkpoints": str(tmp_path / "ckpts"),
                "db": f"sqlite:///{tmp_path / 'oel.db'}"},
        "sampling": {"max_new_tokens": 8},
        "collect": {"episodes": 4, "batch": 4},
        "extract": {"max_new_tokens": 16, "batch": 4},
        # a tiny random model's teacher gap is 0; these loops test the mechanics, so they go on anyway
        "consolidate": {"steps": 2, "batch": 2, "max_new_tokens": 8, "topk": 16, "save_every": 1,
                        "require_gap": False, "eval_episodes": 2},
        "evaluate": {"episodes": 2, "batch": 2},
        "watch": {"min_episodes": 4, "poll_seconds": 0.3},
    }  # fmt: skip
    for section, values in overrides.items():
        sections[section] = {**sections[section], **values}
    return sections


def oel(*args: str) -> list[str]:
    """The `oel` command line, run by this interpreter."""
    return [sys.executable, "-c", "from oel.cli import main; main()", *args]


def start(*args: str, log: Path) -> subprocess.Popen:
    """Start `oel ARGS` in the background with its output in `log`."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "COLUMNS": "120"}
    return subprocess.Popen(oel(*args), cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def count(store: ExperienceStore, stmt: Any) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def train_seeds(store: ExperienceStore, round_index: int = 0) -> list[int]:
    """Seeds of the complete train episodes of a round, one entry per stored episode."""
    stmt = (
        select(Episode.seed)
        .join(Round, Round.id == Episode.round_id)
        .where(Round.idx == round_index, Episode.split == "train", Episode.status == "complete")
        .order_by(Episode.seed)
    )
    with store.engine.connect() as conn:
        return list(conn.execute(stmt).scalars())


def consolidation_steps(store: ExperienceStore) -> int:
    return count(store, select(func.count()).select_from(ConsolidationStep))


def phase_complete(store: ExperienceStore, phase: str) -> bool:
    stmt = select(func.count()).select_from(Phase).where(Phase.phase == phase, Phase.status == "complete")
    return count(store, stmt) > 0


def consolidations(store: ExperienceStore) -> list[tuple[int, str]]:
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(Consolidation.id, Consolidation.status))]
