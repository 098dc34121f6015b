"""The consolidation job shell: what every method shares, so a method module only says how to sample
and what the loss is.

The shape is torchtune's recipe: `setup()` (resolve the start checkpoint,
knowledge and teacher, load the models, resume from the newest snapshot),
`train()` (the step loop: sample a batch, accumulate micro-batch losses,
clip, one optimizer step per update, log), `save_checkpoint()` (a resumable
snapshot), `cleanup()`. A method (`distill.methods`) plugs in through:

    uses_knowledge          whether the teacher's prompt holds a knowledge version (with teacher_knowledge)
    distills                whether the teacher is its only signal (so a teacher gap of 0 stops the job)
    needs_teacher()         whether a frozen teacher / reference model is loaded
    prepare(job)            once, after the models are loaded (read its prompt pool, ...)
    sample(job, step)       -> Batch: the rows to learn from this step
    loss(job, rows, batch)  -> (loss, stats) of one micro-batch, pre-scaled so the sum is the batch loss
    updates                 optimizer steps per sampled batch (GRPO's mu; 1 elsewhere)

The shell never splits a unit (an RL episode) across micro-batches, so a
per-episode loss such as GMPO's sees the whole episode at once.

Choices worth knowing, candidly:

- Everything random is seeded by (seed, step): the batch order and the
  sampler. A resumed run therefore replays exactly the steps an
  uninterrupted run would have taken, which the tests check.
- The teacher defaults to a second copy of the student's starting
  checkpoint loaded from disk (not a deep copy of the live student), so a
  resumed run gets the same teacher as the original one.
- `job.json` in the output folder records the resolved job (start and
  teacher paths, knowledge version, consolidation id) and its settings; a
  rerun with other settings, or a folder written by an older layout, is
  refused with one line rather than silently mixed.
- `carry_optimizer` makes a lineage of jobs (the online loop's rounds) one
  continuing AdamW run: each job starts from the moments and step count its
  start checkpoint's job left beside its weights, and leaves its own. A fresh
  Adam every round takes a full-size, sign-like step on each round's small
  batch, and the measured loop swung between two global moves round after
  round; carried moments average the rounds' gradients instead.
Output folder: `distill.checkpointing`; student forms: `distill.students`.
"""

from __future__ import annotations

import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from agent.hf_policy import HFPolicy
from agent.model import load_model
from agent.policy import Completion, SamplingParams, encode_chat
from agent.prompts import build_messages
from agent.trunk_cache import TrunkCache
from distill import checkpointing as ckpt
from distill import validation
from distill.candidates import ScoredState, candidate_log_pi
from distill.errors import ConsolidationError
from distill.job_config import LOGISTICS, JobConfig
from distill.job_store import open_record, register_final
from distill.students import load_student, save_final, train_top_layers
from memory.store import ExperienceStore


@dataclass
class Batch:
    """What a method's `sample` returns: rows to learn from, and facts about the batch for its loss."""

    rows: list[Any]
    """One entry per forward row (a turn, a sampled response, a scored state)."""
    units: list[int] | None = None
    """Per row, the unit it belongs to (an RL episode); None: every row is its own unit."""
    totals: dict[str, float] = field(default_factory=dict)
    """Batch-wide normalisers a micro-batch loss divides by; `tokens` (trained on) is logged with the step."""
    info: dict[str, Any] = field(default_factory=dict)
    """Facts about the batch to log with the step (rewards, skipped groups, ...)."""


class Method(Protocol):
    """What a consolidation method supplies; see the module docstring."""

    uses_knowledge: bool
    distills: bool
    updates: int

    def needs_teacher(self) -> bool: ...

    def prepare(self, job: ConsolidationJob) -> None: ...

    def sample(self, job: ConsolidationJob, step: int) -> Batch: ...

    def loss(
        self, job: ConsolidationJob, rows: list[Any], batch: Batch
    ) -> tuple[torch.Tensor, dict[str, float]]: ...


class MethodBase:
    """What most methods share: their config kept, one update per batch, a teacher iff knowledge is used."""

    uses_knowledge = False
    distills = False
    """Whether the teacher is the method's only signal (opcd, offpolicy), so a teacher no better than the
    student is refused before training (`require_gap`)."""
    updates = 1

    def __init__(self, job_config: JobConfig, config: Any) -> None:
        self.config = config

    def needs_teacher(self) -> bool:
        return self.uses_knowledge

    def prepare(self, job: ConsolidationJob) -> None:
        """Nothing to read before training by default."""


@dataclass
class ConsolidationResult:
    """What a finished (or already finished) job produced."""

    out: Path
    consolidation_id: int
    checkpoint_id: int
    start_step: int
    """The step training resumed after (0 for a fresh run, `steps` when nothing was left to do)."""
    metrics: list[dict[str, Any]] = field(default_factory=list)
    """Per-step metrics of the steps run in this call."""


class ConsolidationJob:
    """One consolidation job: `setup()`, `train()`, then `cleanup()`; `save_checkpoint` runs inside train."""

    def __init__(self, config: JobConfig, method: Method, method_config: Any, store: ExperienceStore) -> None:
        self.config = config
        self.method = method
        self.method_config = method_config
        self.store = store
        self.out = config.out_dir()
        self.device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.record: ckpt.JobRecord | None = None
        """job.json, once `setup` has read or opened it."""
        self.pending: list[dict[str, Any]] = []
        self.start_step = 0
        self.done_checkpoint: int | None = None
        self.student: Any = None
        self.tokenizer: Any = None
        self.pad_id = 0
        self.optimizer: torch.optim.Optimizer | None = None
        self.teacher: Any = None
        self.teacher_tokenizer: Any = None
        self.knowledge: str | None = None
        self.trunk: TrunkCache | None = None
        self.teacher_log_pi: dict[tuple, torch.Tensor] = {}
        """The frozen teacher's log pi per scored state, keyed by (prompt ids, candidate ids)."""

    @property
    def run_id(self) -> int:
        return self.record.run_id

    def settings(self) -> dict[str, Any]:
        """What defines the job; a resumed run must match it (steps and logistics may differ)."""
        shared = {k: v for k, v in asdict(self.config).items() if k not in LOGISTICS}
        if self.config.student == "dense":
            shared.pop("pattern")
            shared.pop("scale")
        return {**shared, **asdict(self.method_config)}

    # ------------------------------------------------------------------ setup

    def setup(self) -> None:
        """Resolve the start, knowledge and teacher; load the models; resume from the newest snapshot."""
        cfg = self.config
        run_id = self.store.get_run(cfg.run)
        if run_id is None:
            raise ConsolidationError(f"there is no run named {cfg.run!r} in the store")
        record = self._resumed_record() or open_record(
            self.store, cfg, run_id, self.settings(), self.method.uses_knowledge and cfg.teacher_knowledge
        )
        self.record = record
        self.done_checkpoint = record.checkpoint_id
        if self.done_checkpoint is not None:
            self.start_step = record.steps
            return
        if cfg.steps < (record.steps or 0):
            raise ConsolidationError(
                f"{self.out} was started for {record.steps} steps; --steps cannot shrink"
            )
        if record.knowledge_version_id is not None:
            self.knowledge = self.store.knowledge_text(record.knowledge_version_id)

        self.student, self.tokenizer = load_student(record.start_path, cfg.student, cfg.pattern, cfg.scale,
                                                    self.device)  # fmt: skip
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        if cfg.train_layers is not None:
            train_top_layers(self.student, cfg.train_layers)
            n_blocks = len(self.student.base_model.layers)
            if cfg.trunk_cache and cfg.train_layers < n_blocks:
                self.trunk = TrunkCache(self.student, cfg.train_layers, self.pad_id)
        if self.method.needs_teacher():
            self.teacher, self.teacher_tokenizer = load_model(
                record.teacher_path, dtype=torch.float32, device=self.device
            )
            self.teacher.requires_grad_(False)
            if self.teacher_tokenizer.get_vocab() != self.tokenizer.get_vocab() or (
                self.teacher.get_output_embeddings().weight.shape[0]
                != self.student.get_output_embeddings().weight.shape[0]
            ):
                raise ConsolidationError(
                    f"teacher {record.teacher_path} does not share the student's vocabulary"
                )
        if self.method.distills and record.teacher_gap is None:  # once per job, also when it resumes
            record.teacher_gap = validation.teacher_gap(self)
            ckpt.write_job(self.out, record)
        if self.method.distills and cfg.require_gap:
            validation.check_gap(record.teacher_gap)
        self.method.prepare(self)
        trainable = [p for p in self.student.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)

        saved = ckpt.snapshots(self.out)
        if saved:
            state = ckpt.load_snapshot(saved[-1][1], self.student, self.optimizer)
            self.start_step = state["step"]
            self.pending = list(state.get("metrics", []))
            self._flush_metrics()
        elif cfg.carry_optimizer:
            loaded = ckpt.load_moments(Path(record.start_path), self.student, self.optimizer)
            record.moments_from = record.start_path if loaded else None
        record.steps = cfg.steps
        ckpt.write_job(self.out, record)

    def _resumed_record(self) -> ckpt.JobRecord | None:
        """The job record of the output folder, checked against this job's settings; None for a fresh one."""
        record = ckpt.read_job(self.out)
        if record is None:
            return None
        settings = self.settings()
        differ = {k: v for k, v in record.settings.items() if settings.get(k, v) != v}
        # a setting added to oel since the folder was written matches when it keeps its default
        defaults = {**asdict(JobConfig()), **asdict(type(self.method_config)())}
        differ |= {k: None for k, v in settings.items() if k not in record.settings and defaults.get(k) != v}
        if differ or record.settings.keys() - settings.keys():
            raise ConsolidationError(
                f"{self.out} holds a consolidation run with other settings ({differ}); "
                "rerun with those settings to resume it, or pick another --out"
            )
        return record

    # ------------------------------------------------------------------ what methods use

    def sampling(self, step: int) -> SamplingParams:
        """The deployed sampler settings, seeded by (seed, step)."""
        cfg = self.config
        return SamplingParams(
            temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k, max_new_tokens=cfg.max_new_tokens,
            seed=cfg.seed * 1_000_003 + step,
        )  # fmt: skip

    def generate(
        self, model: Any, states: list[str], step: int, knowledge: str | None = None
    ) -> list[Completion]:
        """Sample one completion per state from `model` (no gradient), knowledge spliced in when given."""
        model.eval()
        policy = HFPolicy.from_model(model, self.tokenizer)
        return policy.generate([build_messages(s, knowledge) for s in states], self.sampling(step))

    def candidate_log_pi(self, states: list[ScoredState], temperatures: list[float]) -> list[torch.Tensor]:
        """The student's log pi over each logged state's candidates [K], with gradient: through the trunk
        cache when only the top blocks train, else one full forward (`distill.candidates`)."""
        if self.trunk is not None:
            return self.trunk.log_pi(states, temperatures)
        return candidate_log_pi(
            self.student, [s.prompt_ids for s in states], [s.candidate_ids for s in states], temperatures,
            self.pad_id,
        )  # fmt: skip

    def prompt_ids(self, state: str) -> list[int]:
        """The token ids of the student's prompt for `state` (no knowledge)."""
        return encode_chat(self.tokenizer, build_messages(state))

    def teacher_prompt_ids(self, state: str) -> list[int]:
        """The token ids of the teacher's prompt for `state`, the job's knowledge spliced in."""
        return encode_chat(self.teacher_tokenizer, build_messages(state, self.knowledge))

    def micro_batches(self, batch: Batch) -> Iterator[list[Any]]:
        """The batch's rows in runs of at most `micro_batch` rows; a unit is never split."""
        units = batch.units if batch.units is not None else list(range(len(batch.rows)))
        chunk: list[Any] = []
        for i, row in enumerate(batch.rows):
            starts_unit = i == 0 or units[i] != units[i - 1]
            if chunk and starts_unit and len(chunk) + self._unit_len(units, i) > self.config.micro_batch:
                yield chunk
                chunk = []
            chunk.append(row)
        if chunk:
            yield chunk

    @staticmethod
    def _unit_len(units: list[int], start: int) -> int:
        end = start
        while end < len(units) and units[end] == units[start]:
            end += 1
        return end - start

    # ------------------------------------------------------------------ one step, and the loop

    def train_step(self, step: int) -> dict[str, Any]:
        """Run step `step` (from 1): sample a batch, then `updates` optimizer steps on it; return metrics."""
        started = time.perf_counter()
        batch = self.method.sample(self, step)
        updates = self.method.updates if batch.rows else 0
        totals: dict[str, float] = defaultdict(float)
        grad_norm = 0.0
        for _update in range(updates):
            self.optimizer.zero_grad(set_to_none=True)
            self.student.train()
            for rows in self.micro_batches(batch):
                loss, stats = self.method.loss(self, rows, batch)
                if loss.requires_grad:
                    loss.backward()
                totals["loss"] += float(loss.detach())
                for key, value in stats.items():
                    totals[key] += value
            grad_norm = float(
                torch.nn.utils.clip_grad_norm_(self.student.parameters(), self.config.grad_clip)
            )
            self.optimizer.step()
        passes = max(1, updates)
        return {
            "step": step,
            **{key: value / passes for key, value in totals.items()},
            **({"loss": 0.0} if not updates else {}),
            **batch.info,
            "tokens": batch.totals.get("tokens", 0),
            "updates": updates,
            "seconds": time.perf_counter() - started,
            "lr": self.optimizer.param_groups[0]["lr"],
            "grad_norm": grad_norm,
        }

    def train(self, on_step: Callable[[dict[str, Any]], None] | None = None) -> ConsolidationResult:
        """Run the remaining steps, saving every `save_every`, then write the final folder."""
        cfg = self.config
        metrics: list[dict[str, Any]] = []
        if self.done_checkpoint is None:
            if cfg.eval_every and self.record.validation is None:  # the start, before any step
                validation.gate(self, 0)
            for step in range(self.start_step + 1, cfg.steps + 1):
                row = self.train_step(step)
                if cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.steps):
                    row["val_pass_rate"], row["val_step_acc"] = validation.gate(self, step)
                self.pending.append(row)
                metrics.append(row)
                if on_step is not None:
                    on_step(row)
                if step % cfg.save_every == 0 or step == cfg.steps:
                    self.save_checkpoint(step)
            self.done_checkpoint = self._finish()
        return ConsolidationResult(
            out=self.out, consolidation_id=self.record.consolidation_id, checkpoint_id=self.done_checkpoint,
            start_step=self.start_step, metrics=metrics,
        )  # fmt: skip

    # ------------------------------------------------------------------ saving

    def save_checkpoint(self, step: int) -> None:
        """Snapshot weights + optimizer after `step`, then log the snapshot's metrics in the store."""
        ckpt.save_snapshot(self.out, step, self.student, self.optimizer, {"metrics": self.pending})
        self._flush_metrics()

    def _flush_metrics(self) -> None:
        """Log the pending steps the store does not have yet (a resumed run may find some logged)."""
        self.store.log_consolidation_steps(self.record.consolidation_id, self.pending)
        self.pending = []

    def _finish(self) -> int:
        """Write the final folder, register it, close the consolidation row; return the checkpoint id."""
        record, keep_best = self.record, self.config.keep_best
        best = record.validation.best_step if record.validation is not None else None
        if keep_best and best is not None and best != self.config.steps:
            validation.restore_best(self.student, self.out)
        if keep_best and best is not None:  # the deployed weights are exactly the validated ones
            record.validation.kept_step = best
        fmt, bits = save_final(self.student, self.tokenizer, self.out, self.config.student)
        if self.config.carry_optimizer:
            ckpt.save_moments(self.out, self.student, self.optimizer)
        record.checkpoint_id = register_final(self.store, record, self.out, self.config.method, fmt, bits)
        ckpt.write_job(self.out, record)
        ckpt.remove_snapshots(self.out)
        shutil.rmtree(self.out / validation.BEST_DIR, ignore_errors=True)
        if record.moments_from:  # one set of moments (2x the weights) on disk per lineage
            ckpt.remove_moments(Path(record.moments_from))
        return record.checkpoint_id

    def cleanup(self) -> None:
        """Drop the models so their memory can be reclaimed."""
        self.trunk = self.student = self.teacher = self.optimizer = None
        self.teacher_log_pi = {}
