"""The consolidation job shell: what every method shares, so a method module only says how to sample
and what the loss is.

The shape is torchtune's recipe: `setup()` (resolve the start checkpoint,
knowledge and teacher, load the models, resume from the newest snapshot),
`train()` (the step loop: sample a batch, accumulate micro-batch losses,
clip, one optimizer step per update, log), `save_checkpoint()` (a resumable
snapshot), `cleanup()`. A method (`distill.methods`) plugs in through four
members:

    uses_knowledge          whether the teacher's prompt holds a knowledge version
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

Layout of the output folder: `distill.checkpointing`; the student forms:
`distill.students`; see also docs/architecture.md.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from agent.hf_policy import HFPolicy
from agent.model import load_model, resolve_model_path
from agent.policy import Completion, SamplingParams, encode_chat
from agent.prompts import build_messages
from agent.trunk_cache import TrunkCache
from distill import checkpointing as ckpt
from distill import validation
from distill.candidates import ScoredState, candidate_log_pi
from distill.data import round_checkpoint_path, round_steps
from distill.errors import ConsolidationError
from distill.losses import DEFAULT_CHUNK
from distill.students import FORMS, SCALES, load_student, save_final, train_top_layers
from distill.ternary.config import PATTERNS
from memory.store import ExperienceStore

JOB_LAYOUT = 2
"""Version of job.json's layout; a folder of another layout is refused (see the module docstring)."""


@dataclass
class JobConfig:
    """The fields every consolidation method shares; the defaults run on a 2-core CPU with SmolLM2-135M."""

    run: str = "default"
    """Run name the round belongs to."""
    round: int = 0
    """Round index: its logged states are the prompts (prompt-pool methods); the job is filed under it."""
    method: str = "opcd"
    """Consolidation method (see `oel consolidate --help` for the list)."""
    action_mode: str = "text"
    """text (train on reply tokens, OEL's protocol) or scored (on candidate distributions of scored steps)."""
    steps: int = 20
    """Sampled batches; each is used for `updates` optimizer steps (1 except for RL)."""
    lr: float = 2e-5
    """AdamW learning rate, constant (OEL uses ~1e-6 at billions of parameters; 135M wants more)."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this."""
    temperature: float = 0.7
    """Rollout temperature T: sampling and every KL and log-prob use logits / T."""
    top_p: float = 0.8
    """Sampler nucleus threshold (the deployed setting; losses still use the full vocabulary)."""
    top_k: int = 20
    """Sampler top-k (the deployed setting; 0 = off)."""
    max_new_tokens: int = 128
    """Longest sampled response, in tokens."""
    model: str | None = None
    """Student start; None: the checkpoint the round was played with, else the embedded model."""
    teacher: str | None = None
    """Teacher checkpoint sharing the vocabulary; None: a frozen copy of the student's start."""
    knowledge: int | None = None
    """Knowledge version id in the teacher's prompt; None: the run's latest (extracted or authored)."""
    split: str = "train"
    """Which logged split supplies prompts: train only (val chooses settings and test reports)."""
    out: str | None = None
    """Output folder; None: checkpoints/<run>/round-<R>-<method>."""
    student: str = "dense"
    """Student form: dense, or ternary (BitLinear, N:M mask, deployed packed)."""
    pattern: str = "2:4"
    """ternary: N:M sparsity of the student's weights: 2:4, 4:8, 6:8, or none (dense ternary)."""
    scale: str = "tensor"
    """ternary: the weight scale 1/mean|W| per tensor or per output row (tensor or row)."""
    save_every: int = 10
    """Save a resumable snapshot every this many steps (and after the last)."""
    seed: int = 0
    """Seeds the batch order and the sampler, per step."""
    chunk: int = DEFAULT_CHUNK
    """Teacher rows turned into full-vocabulary logits at a time."""
    micro_batch: int = 8
    """Rows (turns) per forward/backward pass; gradients accumulate over the batch."""
    train_layers: int | None = None
    """Train only the last N transformer blocks (and the final norm); None: every weight."""
    trunk_cache: bool = True
    """Scored methods with train_layers (dense student): compute the frozen blocks once per state and run
    only the trained top blocks each step (exact; agent.trunk_cache)."""
    device: str | None = None
    """torch device; None: cuda if available, else cpu."""
    eval_every: int = 0
    """Play the student greedily on validation tasks before training and every this many steps; 0: off."""
    eval_episodes: int = 32
    """Validation tasks per evaluation: the first N seeds of the val split (never trained or tested on)."""
    eval_env: str | None = None
    """Validation environment; None: the method's env_id, else the round's environment."""
    eval_env_kwargs: dict[str, Any] | None = None
    """Validation environment options; None: the method's env_kwargs when eval_env is the method's env."""
    keep_best: bool = False
    """Deploy the best-validated weights (the start counts, a tie goes to the later); needs eval_every."""
    carry_optimizer: bool = False
    """Start AdamW from the moments the start checkpoint's job left, and leave ours for the next job."""

    def __post_init__(self) -> None:
        if self.split != "train":
            raise ConsolidationError(
                f"consolidation trains on the train split only, not {self.split!r}: val chooses settings and "
                "test reports, so neither may be trained on"
            )
        if self.keep_best and not self.eval_every:
            raise ConsolidationError("keep_best needs eval_every > 0: there is nothing to pick the best from")
        if self.eval_every < 0:
            raise ConsolidationError(f"eval_every must be >= 0, got {self.eval_every}")
        for name in ("steps", "max_new_tokens", "save_every", "chunk", "micro_batch", "eval_episodes"):
            if getattr(self, name) < 1:
                raise ConsolidationError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.temperature > 0:
            raise ConsolidationError(f"temperature must be > 0 for consolidation, got {self.temperature}")
        if not self.lr > 0:
            raise ConsolidationError(f"lr must be > 0, got {self.lr}")
        for name, allowed in (("student", FORMS), ("pattern", PATTERNS), ("scale", SCALES)):
            if getattr(self, name) not in allowed:
                raise ConsolidationError(
                    f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(allowed)}"
                )

    def out_dir(self) -> Path:
        """Where the job writes: `out`, or checkpoints/<run>/round-<R>-<method>[-ternary-NofM]."""
        if self.out:
            return Path(self.out)
        form = "" if self.student == "dense" else f"-ternary-{self.pattern.replace(':', 'of')}"
        return Path("checkpoints") / self.run / f"round-{self.round}-{self.method}{form}"


LOGISTICS = ("steps", "save_every", "device", "out")
"""JobConfig fields a resumed job may change (how long and where, not what)."""


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
        self.pending: list[dict[str, Any]] = []
        self.start_step = 0
        self.done_checkpoint: int | None = None
        self.teacher: Any = None
        self.teacher_tokenizer: Any = None
        self.knowledge: str | None = None
        self.trunk: TrunkCache | None = None

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
        self.run_id = self.store.get_run(cfg.run)
        if self.run_id is None:
            raise ConsolidationError(f"there is no run named {cfg.run!r} in the store")
        self.job = self._read_job() or self._new_job()
        self.done_checkpoint = self.job.get("checkpoint_id")
        if self.done_checkpoint is not None:
            self.start_step = self.job["steps"]
            return
        if self.done_checkpoint is None and cfg.steps < self.job.get("steps", 0):
            raise ConsolidationError(
                f"{self.out} was started for {self.job['steps']} steps; --steps cannot shrink"
            )
        if self.job["knowledge_version_id"] is not None:
            self.knowledge = self.store.knowledge_text(self.job["knowledge_version_id"])

        self.student, self.tokenizer = load_student(
            self.job["start_path"], cfg.student, cfg.pattern, cfg.scale, self.device
        )
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        if cfg.train_layers is not None:
            train_top_layers(self.student, cfg.train_layers)
            n_blocks = len(self.student.base_model.layers)
            if cfg.trunk_cache and cfg.student == "dense" and cfg.train_layers < n_blocks:
                self.trunk = TrunkCache(self.student, cfg.train_layers, self.pad_id)
        if self.method.needs_teacher():
            self.teacher, self.teacher_tokenizer = load_model(
                self.job["teacher_path"], dtype=torch.float32, device=self.device
            )
            self.teacher.requires_grad_(False)
            if self.teacher_tokenizer.get_vocab() != self.tokenizer.get_vocab() or (
                self.teacher.get_output_embeddings().weight.shape[0]
                != self.student.get_output_embeddings().weight.shape[0]
            ):
                raise ConsolidationError(
                    f"teacher {self.job['teacher_path']} does not share the student's vocabulary"
                )
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
            self.job["moments_from"] = (
                self.job["start_path"]
                if ckpt.load_moments(Path(self.job["start_path"]), self.student, self.optimizer)
                else None
            )
        self.job["steps"] = cfg.steps
        ckpt.write_job(self.out, self.job)

    def _read_job(self) -> dict[str, Any] | None:
        """The job record of the output folder, checked against this job's layout and settings."""
        job = ckpt.read_job(self.out)
        if job is None:
            return None
        if job.get("layout") != JOB_LAYOUT:
            raise ConsolidationError(
                f"{self.out} holds a consolidation written by an older oel (job layout "
                f"{job.get('layout', 1)}, this oel writes {JOB_LAYOUT}); it cannot be resumed: pick another "
                "--out or delete the folder"
            )
        settings = self.settings()
        differ = {k: v for k, v in job["settings"].items() if settings.get(k, v) != v}
        if differ or job["settings"].keys() != settings.keys():
            raise ConsolidationError(
                f"{self.out} holds a consolidation run with other settings ({differ}); "
                "rerun with those settings to resume it, or pick another --out"
            )
        return job

    def _new_job(self) -> dict[str, Any]:
        """Resolve what 'default' means for this job, open the consolidation row, and record both."""
        cfg = self.config
        start = cfg.model
        if start is None:
            try:
                start = round_checkpoint_path(
                    self.store, round_steps(self.store, cfg.run, cfg.round, cfg.split)
                )
            except ConsolidationError:  # no logged round (an RL job may run without one)
                start = None
        start_path = str(resolve_model_path(start))
        teacher_path = str(resolve_model_path(cfg.teacher)) if cfg.teacher else start_path
        knowledge_id = cfg.knowledge
        if self.method.uses_knowledge:
            if knowledge_id is None:
                latest = self.store.latest_knowledge_version(self.run_id)
                if latest is None:
                    raise ConsolidationError(
                        f"run {cfg.run!r} has no knowledge version; run `oel knowledge extract` or "
                        "`oel knowledge add` first, or pass --knowledge VERSION"
                    )
                knowledge_id = latest[0]
            self.store.knowledge_version(knowledge_id, run_id=self.run_id)  # a clear error for a bad id
        elif knowledge_id is not None:
            raise ConsolidationError(f"method {cfg.method!r} uses no knowledge; drop --knowledge")
        round_id = self.store.start_round(self.run_id, cfg.round)
        parent_id = self.store.checkpoint_for_path(start_path, run_id=self.run_id)
        hparams = {**self.settings(), "start_path": start_path, "teacher_path": teacher_path}
        consolidation_id = self.store.start_consolidation(
            run_id=self.run_id, round_id=round_id, method=cfg.method, hparams=hparams,
            knowledge_version_id=knowledge_id, parent_checkpoint_id=parent_id,
        )  # fmt: skip
        return {
            "layout": JOB_LAYOUT, "settings": self.settings(), "consolidation_id": consolidation_id,
            "run_id": self.run_id, "round_id": round_id, "parent_checkpoint_id": parent_id,
            "knowledge_version_id": knowledge_id, "start_path": start_path, "teacher_path": teacher_path,
            "hparams": hparams,
        }  # fmt: skip

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
            if cfg.eval_every and "validation" not in self.job:  # the start, before any step
                self._validate(0)
            for step in range(self.start_step + 1, cfg.steps + 1):
                row = self.train_step(step)
                if cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.steps):
                    row["val_pass_rate"], row["val_step_acc"] = self._validate(step)
                self.pending.append(row)
                metrics.append(row)
                if on_step is not None:
                    on_step(row)
                if step % cfg.save_every == 0 or step == cfg.steps:
                    self.save_checkpoint(step)
            self.done_checkpoint = self._finish()
        return ConsolidationResult(
            out=self.out, consolidation_id=self.job["consolidation_id"], checkpoint_id=self.done_checkpoint,
            start_step=self.start_step, metrics=metrics,
        )  # fmt: skip

    # ------------------------------------------------------------------ validation (distill.validation)

    def validation_env(self) -> tuple[str, dict]:
        """The environment id and options validation plays (the run's own game in a loop)."""
        cfg = self.config
        own = getattr(self.method_config, "env_id", None)
        env = cfg.eval_env or own
        if env is None:
            env = round_steps(self.store, cfg.run, cfg.round, cfg.split)["env"].mode()[0]
        if cfg.eval_env_kwargs is not None:
            return env, dict(cfg.eval_env_kwargs)
        kwargs = dict(getattr(self.method_config, "env_kwargs", {}) or {}) if env == own else {}
        return env, kwargs

    def _validation_settings(self) -> dict[str, Any]:
        """What a validation pass rate depends on besides the weights."""
        env, kwargs = self.validation_env()
        cfg = self.config
        return {"env": env, "env_kwargs": kwargs, "episodes": cfg.eval_episodes,
                "action_mode": cfg.action_mode, "max_new_tokens": cfg.max_new_tokens}  # fmt: skip

    def _start_rate(self) -> tuple[float, float | None] | None:
        """The start's validation pass rate and step accuracy when the job that made the start validated
        exactly these weights on the same tasks (a loop's round starts from the weights the last round
        kept), else None."""
        parent = self.job["parent_checkpoint_id"]
        if parent is None or self.config.student != "dense":
            return None
        meta = self.store.checkpoint_info(parent)["meta"] or {}
        done = meta.get("validation") or {}
        if done.get("kept_step") is None or done.get("settings") != self._validation_settings():
            return None
        return float(done["best_rate"]), done.get("best_accuracy")

    def _validate(self, step: int) -> tuple[float, float | None]:
        """Validation pass rate and step accuracy after `step`; with keep_best, keep the weights when they
        are the best yet (the pass rate first, then the step accuracy: `distill.validation.better`)."""
        env, kwargs = self.validation_env()
        known = self._start_rate() if step == 0 else None
        rate, accuracy = known if known is not None else validation.validate(
            self.store, self.student, self.tokenizer, run_id=self.run_id,
            consolidation_id=self.job["consolidation_id"], step=step, env_id=env, env_kwargs=kwargs,
            episodes=self.config.eval_episodes, action_mode=self.config.action_mode,
            max_new_tokens=self.config.max_new_tokens,
            trunk_layers=self.config.train_layers if self.trunk is not None else None,
        )  # fmt: skip
        record = self.job.setdefault("validation", {"history": [], "best_step": None, "best_rate": -1.0})
        record["settings"] = self._validation_settings()
        record["history"] = [h for h in record["history"] if h[0] != step] + [[step, rate]]
        if self.config.keep_best and validation.better(
            rate, accuracy, record["best_rate"], record.get("best_accuracy")
        ):
            validation.save_best(self.student, self.out)
            record["best_step"], record["best_rate"], record["best_accuracy"] = step, rate, accuracy
        ckpt.write_job(self.out, self.job)
        return rate, accuracy

    # ------------------------------------------------------------------ saving

    def save_checkpoint(self, step: int) -> None:
        """Snapshot weights + optimizer after `step`, then log the snapshot's metrics in the store."""
        ckpt.save_snapshot(self.out, step, self.student, self.optimizer, {"metrics": self.pending})
        self._flush_metrics()

    def _flush_metrics(self) -> None:
        """Log the pending steps the store does not have yet (a resumed run may find some logged)."""
        self.store.log_consolidation_steps(self.job["consolidation_id"], self.pending)
        self.pending = []

    def _finish(self) -> int:
        """Write the final folder, register it, close the consolidation row; return the checkpoint id."""
        job = self.job
        best = job.get("validation", {}).get("best_step")
        if self.config.keep_best and best is not None and best != self.config.steps:
            validation.restore_best(self.student, self.out)
        if self.config.keep_best and best is not None:  # the deployed weights are exactly the validated ones
            job["validation"]["kept_step"] = best
        fmt, bits = save_final(self.student, self.tokenizer, self.out, self.config.student)
        if self.config.carry_optimizer:
            ckpt.save_moments(self.out, self.student, self.optimizer)
        checkpoint_id = self.store.register_checkpoint(
            path=str(self.out.resolve()), parent_id=job["parent_checkpoint_id"], run_id=job["run_id"],
            round_id=job["round_id"], method=self.config.method, fmt=fmt, bits_per_weight=bits,
            meta={"hparams": job["hparams"], "consolidation_id": job["consolidation_id"],
                  "knowledge_version_id": job["knowledge_version_id"], "validation": job.get("validation")},
        )  # fmt: skip
        job["checkpoint_id"] = checkpoint_id
        ckpt.write_job(self.out, job)
        self.store.finish_consolidation(job["consolidation_id"], checkpoint_id)
        ckpt.remove_snapshots(self.out)
        shutil.rmtree(self.out / validation.BEST_DIR, ignore_errors=True)
        if job.get("moments_from"):  # one set of moments (2x the weights) on disk per lineage
            ckpt.remove_moments(Path(job["moments_from"]))
        return checkpoint_id

    def cleanup(self) -> None:
        """Drop the models so their memory can be reclaimed."""
        self.trunk = None
        for name in ("student", "teacher", "optimizer"):
            if hasattr(self, name):
                setattr(self, name, None)


def split_fields(values: dict[str, Any], method_config_cls: type) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split flat settings into (JobConfig fields, method config fields); unknown keys raise."""
    shared = {f.name for f in dataclasses.fields(JobConfig)}
    own = {f.name for f in dataclasses.fields(method_config_cls)}
    unknown = set(values) - shared - own
    if unknown:
        raise ConsolidationError(
            f"unknown setting(s) {', '.join(sorted(unknown))} for method {values.get('method', 'opcd')!r}; "
            f"it takes {', '.join(sorted(own)) or 'no settings of its own'} besides the shared ones"
        )
    return ({k: v for k, v in values.items() if k in shared}, {k: v for k, v in values.items() if k in own})
