"""Resumable consolidation snapshots: weights and AdamW state as safetensors, scalars as JSON, never pickle.

An output folder looks like this:

    out/
      job.json              the consolidation row this folder belongs to and its settings (written first)
      resume-000020/        the newest snapshot; older ones are deleted once a newer one is complete
        model.safetensors   the student's weights (tied tensors stored once)
        optimizer.safetensors   AdamW moments and step counts, keyed "<parameter name>::<field>"
        state.json          step, plus the metrics of the steps since the previous snapshot
      config.json, model.safetensors, tokenizer files   the final HF folder, once the last step is done
      optimizer.safetensors the final AdamW moments, only for a job that carries them to the next round

A snapshot is written into `resume-N.tmp/` and renamed to `resume-N/` when
complete; the rename is atomic, so a folder named `resume-N` is whole by
construction and an interrupted save leaves only a `.tmp` folder that the
next save removes. Loading a snapshot that is damaged anyway (truncated by a
disk problem, edited, from another model) raises CheckpointError naming the
file and the problem; it never falls back silently to an older state.

Why the metrics ride in `state.json`: the store gets a step's metrics only
after a snapshot holding that step is on disk, and a resumed run re-logs
whatever the store is missing from the snapshot it resumes from. Steps after
the newest snapshot are recomputed on resume and logged then, so every step
is logged exactly once.

`job.json` is a `JobRecord`: what the job resolved when it started (start
and teacher paths, knowledge version, the consolidation row), its settings,
and what it has done since (steps asked for, validation, the final
checkpoint). A typed record rather than a dict, so a misspelt key is an
AttributeError where it is written, not a silent miss where it is read; its
JSON keys are the field names, so folders written before it was typed load
unchanged (a key they lack takes the field's default).

Before a job (or a loop) starts, `check_writable` refuses an output folder it
could not create or write, and `check_run_name` a run name that, as a folder
name under the checkpoints folder, would lead out of it (`../x`); both say so
in one line rather than fail at the first save.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file, save_model
from safetensors.torch import load_model as load_weights

from distill.errors import CheckpointError, ConsolidationError

JOB_FILE = "job.json"
STATE_FILE = "state.json"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
_SNAPSHOT = re.compile(r"^resume-(\d+)$")


JOB_LAYOUT = 2
"""Version of job.json's layout; a folder of another layout is refused rather than resumed."""


@dataclass
class ValidationRecord:
    """The job's validation so far (`distill.validation`); stored in job.json and the checkpoint's meta."""

    history: list[list[float]] = field(default_factory=list)
    """[step, pass rate] per validated step, the start (step 0) included."""
    best_step: int | None = None
    """The step of the best weights so far (pass rate, then step accuracy); None before any."""
    best_rate: float = -1.0
    best_accuracy: float | None = None
    settings: dict[str, Any] | None = None
    """What a pass rate depends on besides the weights (environment, options, tasks, action mode)."""
    kept_step: int | None = None
    """With keep_best, the step whose weights were deployed (set when the job finishes)."""


@dataclass
class JobRecord:
    """job.json: what a consolidation resolved when it started, its settings, and what it has done."""

    settings: dict[str, Any]
    """JobConfig and method settings that define the job (a resumed run must match them)."""
    consolidation_id: int
    run_id: int
    round_id: int
    parent_checkpoint_id: int | None
    """The start checkpoint's row, when the start is a registered checkpoint."""
    knowledge_version_id: int | None
    start_path: str
    teacher_path: str
    hparams: dict[str, Any]
    """settings plus the resolved paths, as stored with the consolidation row."""
    layout: int = JOB_LAYOUT
    steps: int | None = None
    """Steps asked for (it may grow on resume, never shrink)."""
    moments_from: str | None = None
    """carry_optimizer: the folder whose AdamW moments the job started from (removed when it finishes)."""
    outcomes_version_id: int | None = None
    """credit: the knowledge version recording the job's outcome table (recorded once, also on resume)."""
    validation: ValidationRecord | None = None
    teacher_gap: dict[str, Any] | None = None
    """Distillation: teacher and student measured on the val tasks before training (`distill.validation`)."""
    checkpoint_id: int | None = None
    """The final checkpoint's row, once the job is done."""

    @classmethod
    def from_json(cls, data: dict[str, Any], path: Path) -> JobRecord:
        """The record of a job.json's object; CheckpointError naming the file when it is not one."""
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            record = cls(**{k: v for k, v in data.items() if k in names})
            if isinstance(record.validation, dict):
                record.validation = ValidationRecord(**record.validation)
        except TypeError as exc:
            raise CheckpointError(f"{path} is not a consolidation job record: {exc}") from None
        return record


def check_run_name(name: str) -> None:
    """Raise ConsolidationError unless `name` can name one folder: no path separator, not '.' or '..'."""
    separators = {"/", "\\", os.sep, os.altsep} - {None}
    if not name or name in (".", "..") or any(sep in name for sep in separators):
        raise ConsolidationError(
            f"run name {name!r} cannot name a checkpoint folder: it must not be empty, '.' or '..', "
            "nor hold a path separator (it would write outside the checkpoints folder)"
        )


def check_writable(folder: Path) -> None:
    """Raise CheckpointError unless `folder` is, or can be created as, a folder this process may write in.

    Nothing is created: the nearest part of the path that exists must be a writable folder.
    """
    existing = Path(folder).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise CheckpointError(f"cannot write checkpoints to {folder}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CheckpointError(f"cannot write checkpoints to {folder}: {existing} is not writable")


def read_job(out: Path) -> JobRecord | None:
    """The job record of an output folder, or None for a fresh folder; CheckpointError when it is of
    another layout or not a job record."""
    path = out / JOB_FILE
    if not path.exists():
        return None
    data = _read_json(path)
    if data.get("layout") != JOB_LAYOUT:
        raise CheckpointError(
            f"{out} holds a consolidation written by an older oel (job layout {data.get('layout', 1)}, this "
            f"oel writes {JOB_LAYOUT}); it cannot be resumed: pick another --out or delete the folder"
        )
    return JobRecord.from_json(data, path)


def write_job(out: Path, job: JobRecord) -> None:
    """Write (replace atomically) the job record."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f"{JOB_FILE}.tmp"
    tmp.write_text(json.dumps(dataclasses.asdict(job), indent=2, sort_keys=True))
    tmp.replace(out / JOB_FILE)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} does not hold a JSON object")
    return data


def snapshots(out: Path) -> list[tuple[int, Path]]:
    """Complete snapshots in `out`, oldest first, as (step, folder)."""
    found = []
    for child in out.iterdir() if out.is_dir() else ():
        match = _SNAPSHOT.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found)


def save_snapshot(
    out: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> Path:
    """Save weights, optimizer state and `state` (JSON) as the snapshot after `step`; drop older ones."""
    final = out / f"resume-{step:06d}"
    tmp = out / f"resume-{step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / MODEL_FILE))
    save_file(_optimizer_tensors(model, optimizer), str(tmp / OPTIMIZER_FILE))
    (tmp / STATE_FILE).write_text(json.dumps({**state, "step": step}, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old_step, folder in snapshots(out):
        if old_step < step:
            shutil.rmtree(folder, ignore_errors=True)
    for leftover in out.glob("resume-*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)
    return final


def remove_snapshots(out: Path) -> None:
    """Delete every snapshot (once the final folder is written they are dead weight: ~3x the model)."""
    for _step, folder in snapshots(out):
        shutil.rmtree(folder, ignore_errors=True)


def load_snapshot(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Load a snapshot into `model` and `optimizer` (in place) and return its state dict."""
    for name in (STATE_FILE, MODEL_FILE, OPTIMIZER_FILE):
        if not (folder / name).is_file():
            raise CheckpointError(f"checkpoint {folder} is incomplete: {name} is missing")
    state = _read_json(folder / STATE_FILE)
    if not isinstance(state.get("step"), int):
        raise CheckpointError(f"{folder / STATE_FILE} has no integer 'step'")
    device = str(next(model.parameters()).device)
    try:
        load_weights(model, str(folder / MODEL_FILE), strict=True, device=device)
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise CheckpointError(f"cannot load the weights in {folder / MODEL_FILE}: {_short(exc)}") from None
    _load_optimizer(folder / OPTIMIZER_FILE, model, optimizer)
    return state


def save_moments(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Leave the optimizer's state in a final folder, for the job that starts from it (written atomically)."""
    tmp = folder / (OPTIMIZER_FILE + ".tmp")
    save_file(_optimizer_tensors(model, optimizer), str(tmp))
    tmp.rename(folder / OPTIMIZER_FILE)


def load_moments(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> bool:
    """Load the optimizer state a finished job left in `folder`; False when it left none."""
    if not (folder / OPTIMIZER_FILE).is_file():
        return False
    _load_optimizer(folder / OPTIMIZER_FILE, model, optimizer)
    return True


def remove_moments(folder: Path) -> None:
    """Delete the optimizer state a finished job left in `folder` (once a later job holds its own)."""
    (folder / OPTIMIZER_FILE).unlink(missing_ok=True)


def _load_optimizer(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Read an optimizer-state file onto the model's device and restore it into `optimizer`."""
    try:
        tensors = load_file(str(path), device=str(next(model.parameters()).device))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read the optimizer state {path}: {_short(exc)}") from None
    _restore_optimizer(model, optimizer, tensors, path)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _optimizer_tensors(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Every tensor of the optimizer's per-parameter state, keyed by parameter name and field."""
    tensors = {}
    for name, param in model.named_parameters():
        for key, value in optimizer.state.get(param, {}).items():
            if not isinstance(value, torch.Tensor):
                raise CheckpointError(f"optimizer state {name}.{key} is not a tensor; cannot save it safely")
            tensors[f"{name}::{key}"] = value.detach().contiguous()
    return tensors


def _restore_optimizer(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], where: Path
) -> None:
    params = dict(model.named_parameters())
    restored: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        name, _, field = key.rpartition("::")
        if name not in params:
            raise CheckpointError(f"{where} holds state for {name!r}, which the model does not have")
        if field.startswith("exp_avg") and value.shape != params[name].shape:
            raise CheckpointError(
                f"{where}: {key} has shape {tuple(value.shape)}, the parameter {tuple(params[name].shape)}"
            )
        restored.setdefault(name, {})[field] = value
    optimizer.state.clear()
    for name, fields in restored.items():
        optimizer.state[params[name]] = fields
