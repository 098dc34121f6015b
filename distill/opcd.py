"""On-policy context distillation (OPCD): move a knowledge text from the prompt into the weights.

The recipe (Ye et al. 2026; microsoft/LMOps `opcd/`, `oel/`), one optimizer
step per freshly sampled batch:

1. take a batch of the round's logged states x (the environment is not needed);
2. the student samples y ~ pi_theta(. | x) WITHOUT the knowledge, at the
   rollout temperature T;
3. the frozen teacher scores the same tokens with the knowledge e in its
   prompt, pi_t(. | e, x, y<t);
4. loss = mean over response tokens of the top-k reverse KL
   sum_{v in TopK_student} p_s(v) (log p_s(v) - log p_t(v)), both at T,
   gradient into the student only (see `distill.losses`);
5. AdamW, grad-norm clip, one step; save now and then.

Two baselines share every line except steps 2 and 4, so they compare fairly:
`offpolicy` lets the teacher (with knowledge) sample y and minimises the
forward KL over the teacher's top-k; `sft` imitates the logged completions of
the round's won episodes with token NLL (no teacher at all).

Choices worth knowing, candidly:

- The student samples with the deployed sampler settings (T, top-p, top-k),
  so it visits the prefixes it will visit when deployed; the KL itself is
  over the full-vocabulary distributions at T, as the policy's log-prob
  definition (`agent.policy`) is.
- "Strictly on-policy" means exactly one update per sampled batch: no
  minibatch epochs, no importance ratios. At 135M on CPU, generation is most
  of the step's time anyway.
- The teacher defaults to a second copy of the student's starting
  checkpoint loaded from disk (not a deep copy of the live student), so a
  resumed run gets the same teacher as the original one.
- The student is any causal LM whose `base_model` returns hidden states and
  whose `get_output_embeddings()` maps them to logits (every HF decoder, and
  a `distill.ternary` student converted from one). Logits are computed only
  at the response positions, never for the prompt.
- Everything random is seeded by (seed, step): the batch order and the
  sampler. A resumed run therefore replays exactly the steps an
  uninterrupted run would have taken, which the tests check.
- `student="ternary"` converts the loaded student to a sparse-ternary one
  (`distill.ternary.convert`, N:M `pattern`) before training; the teacher is
  still the dense starting checkpoint. The job ends by writing the packed
  student (what gets deployed) with its trainable latent weights beside it,
  and the checkpoint row records the format and bits per weight (layout in
  `distill.ternary.deploy`). Snapshots hold the latent weights, as for dense.

Shape: `Consolidator.setup / train / save_checkpoint / cleanup`, as torchtune
recipes are; `consolidate(config, store)` runs all four.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from sqlalchemy import select

from agent.hf_policy import HFPolicy
from agent.model import load_model, resolve_model_path
from agent.policy import SamplingParams, encode_chat
from agent.prompts import build_messages
from distill import checkpointing as ckpt
from distill.data import (
    Example,
    Packed,
    batch_indices,
    load_examples,
    pack,
    round_checkpoint_path,
    round_steps,
)
from distill.errors import ConsolidationError
from distill.losses import DEFAULT_CHUNK, DEFAULT_TOPK, offpolicy_token_kl, opcd_token_kl, token_nll
from distill.ternary.config import PATTERNS, TernaryError
from distill.ternary.deploy import FMT as PACKED_FMT
from distill.ternary.deploy import save_consolidated, trainable_start
from distill.ternary.student import convert
from memory.models import ConsolidationStep
from memory.store import ExperienceStore

METHODS = ("opcd", "offpolicy", "sft", "rl", "opcd+rl")
STUDENTS = ("dense", "ternary")
SCALES = ("tensor", "row")
OBJECTIVES = ("grpo", "gmpo")


@dataclass
class ConsolidateConfig:
    """One consolidation job; the defaults run on a 2-core CPU with SmolLM2-135M."""

    round: int = 0
    """Round index whose logged states are the prompts."""
    method: str = "opcd"
    """opcd (on-policy, reverse KL), offpolicy (teacher samples, forward KL), sft (NLL on wins),
    rl (GRPO/GMPO on environment rewards) or opcd+rl (their weighted sum; see `distill.rl`)."""
    run: str = "default"
    """Run name the round belongs to."""
    steps: int = 20
    """Optimizer steps; each one samples a fresh batch."""
    batch: int = 4
    """Prompts per step (one response each)."""
    lr: float = 2e-5
    """AdamW learning rate, constant (OEL uses ~1e-6 at billions of parameters; 135M wants more)."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this."""
    topk: int = DEFAULT_TOPK
    """k of the top-k KL (student's top-k for opcd, teacher's for offpolicy)."""
    temperature: float = 0.7
    """Rollout temperature T: sampling and both KL distributions use logits / T."""
    top_p: float = 0.8
    """Sampler nucleus threshold (the deployed setting; the KL is still over the full vocabulary)."""
    top_k: int = 20
    """Sampler top-k (the deployed setting; 0 = off)."""
    max_new_tokens: int = 128
    """Longest sampled response, in tokens."""
    model: str | None = None
    """Student start; None: the checkpoint the round was played with, else the embedded model."""
    teacher: str | None = None
    """Teacher checkpoint sharing the vocabulary; None: a frozen copy of the student's starting checkpoint."""
    knowledge: int | None = None
    """Knowledge version id in the teacher's prompt; None: the run's latest extracted version."""
    split: str = "train"
    """Which logged split supplies prompts (never the held-out one)."""
    out: str | None = None
    """Output HF folder; None: checkpoints/<run>/round-<R>-<method>."""
    student: str = "dense"
    """dense, or ternary: train a sparse-ternary (BitLinear) student and deploy it packed."""
    pattern: str = "2:4"
    """ternary: N:M sparsity of the student's weights: 2:4, 4:8, 6:8, or none (dense ternary)."""
    scale: str = "tensor"
    """ternary: take the weight scale 1/mean|W| per tensor or per output row (tensor or row)."""
    save_every: int = 10
    """Save a resumable snapshot every this many steps (and after the last)."""
    seed: int = 0
    """Seeds the batch order and the sampler, per step."""
    chunk: int = DEFAULT_CHUNK
    """Teacher rows turned into full-vocabulary logits at a time."""
    device: str | None = None
    """torch device; None: cuda if available, else cpu."""
    env_id: str | None = None
    """rl: environment the student plays; None: the one the round was played on."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """rl: extra `gymnasium.make` keyword arguments for that environment (size, holes, max_steps, ...)."""
    group_size: int = 4
    """rl: G, episodes played from the same task seed; advantages are normalised within them."""
    groups: int = 2
    """rl: groups (tasks) per optimizer step."""
    objective: str = "grpo"
    """rl: grpo (clipped token ratio, token-level mean) or gmpo (geometric mean of token ratios)."""
    clip_low: float | None = None
    """rl: lower clip epsilon (ratio for grpo, log-ratio for gmpo); None: 0.2 for grpo, 0.4 for gmpo."""
    clip_high: float | None = None
    """rl: upper clip epsilon; None: 0.28 for grpo (clip-higher), 0.4 for gmpo."""
    kl_beta: float = 0.0
    """rl: weight of the k3 KL to the reference (the teacher slot: the starting checkpoint); 0 = off."""
    rl_weight: float = 0.5
    """opcd+rl: loss = rl_weight * RL + (1 - rl_weight) * OPCD."""
    rl_updates: int = 1
    """rl: optimizer steps per played batch (GRPO's mu; above 1 the clipped ratio starts to matter)."""
    micro_batch: int = 8
    """rl: turns per forward/backward pass (gradients accumulate over the batch)."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConsolidationError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        positive = ("steps", "batch", "topk", "max_new_tokens", "save_every", "chunk")
        for name in (*positive, "groups", "rl_updates", "micro_batch"):
            if getattr(self, name) < 1:
                raise ConsolidationError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.temperature > 0:
            raise ConsolidationError(f"temperature must be > 0 for distillation, got {self.temperature}")
        if not self.lr > 0:
            raise ConsolidationError(f"lr must be > 0, got {self.lr}")
        for name, allowed in (("student", STUDENTS), ("pattern", PATTERNS), ("scale", SCALES)):
            if getattr(self, name) not in allowed:
                raise ConsolidationError(
                    f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(allowed)}"
                )
        if self.group_size < 2:
            raise ConsolidationError(
                f"group_size must be >= 2 (advantages compare episodes), got {self.group_size}"
            )
        if self.objective not in OBJECTIVES:
            raise ConsolidationError(
                f"unknown objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}"
            )
        if not 0 <= self.rl_weight <= 1 or self.kl_beta < 0:
            raise ConsolidationError(
                f"need 0 <= rl_weight <= 1 and kl_beta >= 0, got {self.rl_weight}, {self.kl_beta}"
            )
        for name in ("clip_low", "clip_high"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ConsolidationError(f"{name} must be > 0, got {getattr(self, name)}")

    def needs_knowledge(self) -> bool:
        """Whether the method puts a knowledge version in a teacher's prompt."""
        return self.method in ("opcd", "offpolicy", "opcd+rl")

    def needs_teacher(self) -> bool:
        """Whether a frozen teacher (or, for rl with kl_beta > 0, reference) model is loaded."""
        return self.needs_knowledge() or (self.method == "rl" and self.kl_beta > 0)

    def settings(self) -> dict[str, Any]:
        """The fields that define the job; a resumed run must match them (steps and logistics may differ)."""
        skip = {"steps", "save_every", "device", "out"}
        if self.student == "dense":
            skip |= {"pattern", "scale"}
        return {k: v for k, v in asdict(self).items() if k not in skip}

    def _student_tag(self) -> str:
        """Folder-name suffix that keeps a ternary student apart from the dense one of the same round."""
        return "" if self.student == "dense" else f"-ternary-{self.pattern.replace(':', 'of')}"

    def out_dir(self) -> Path:
        """Where the job writes: `out`, or checkpoints/<run>/round-<R>-<method>."""
        return (
            Path(self.out)
            if self.out
            else Path("checkpoints") / self.run / f"round-{self.round}-{self.method}{self._student_tag()}"
        )


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


def response_hidden(model: Any, batch: Packed) -> torch.Tensor:
    """The model body's hidden states at the response-predicting positions, [N, H]."""
    out = model.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
    return out.last_hidden_state[batch.rows, batch.cols]


def response_logits(model: Any, batch: Packed) -> torch.Tensor:
    """The model's logits at the response-predicting positions only, [N, V]."""
    return model.get_output_embeddings()(response_hidden(model, batch))


@torch.no_grad()
def heldout_kl(
    student: Any,
    teacher: Any,
    tokenizer: Any,
    states: list[str],
    knowledge: str,
    *,
    temperature: float = 0.7,
    topk: int = DEFAULT_TOPK,
    max_new_tokens: int = 24,
    seed: int = 0,
    chunk: int = DEFAULT_CHUNK,
) -> float:
    """Mean per-token top-k reverse KL(student || teacher with knowledge) on the student's own samples."""
    student.eval()
    device = str(next(student.parameters()).device)
    params = SamplingParams(
        temperature=temperature, top_p=1.0, top_k=0, max_new_tokens=max_new_tokens, seed=seed
    )
    completions = HFPolicy.from_model(student, tokenizer).generate(
        [build_messages(s) for s in states], params
    )
    responses = [c.token_ids for c in completions]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    s_batch = pack([c.prompt_ids for c in completions], responses, pad, device)
    t_prompts = [encode_chat(tokenizer, build_messages(s, knowledge)) for s in states]
    t_batch = pack(t_prompts, responses, pad, device)
    kl = opcd_token_kl(
        response_logits(student, s_batch), response_hidden(teacher, t_batch),
        teacher.get_output_embeddings(), temperature, topk, chunk,
    )  # fmt: skip
    return float(kl.mean())


class Consolidator:
    """One consolidation job: `setup()`, `train()`, then `cleanup()`; `save_checkpoint` runs inside train."""

    def __init__(self, config: ConsolidateConfig, store: ExperienceStore) -> None:
        self.config = config
        self.store = store
        self.out = config.out_dir()
        self.device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.pending: list[dict[str, Any]] = []
        self.start_step = 0
        self.done_checkpoint: int | None = None

    # ------------------------------------------------------------------ setup

    def setup(self) -> None:
        """Resolve the round, knowledge and checkpoints; load the models; resume from the newest snapshot."""
        cfg = self.config
        run_id = self.store.get_run(cfg.run)
        if run_id is None:
            raise ConsolidationError(f"there is no run named {cfg.run!r} in the store")
        steps = round_steps(self.store, cfg.run, cfg.round, cfg.split)
        self.examples: list[Example] = load_examples(steps, sft=cfg.method == "sft")
        self.job = ckpt.read_job(self.out) or self._new_job(run_id, steps)
        differ = {k: v for k, v in self.job["settings"].items() if cfg.settings().get(k, v) != v}
        if differ or self.job["settings"].keys() != cfg.settings().keys():
            raise ConsolidationError(
                f"{self.out} holds a consolidation run with other settings ({differ}); "
                "rerun with those settings to resume it, or pick another --out"
            )
        self.done_checkpoint = self.job.get("checkpoint_id")
        if self.done_checkpoint is not None:
            self.start_step = self.job["steps"]
            return
        if cfg.steps < self.job.get("steps", 0):
            raise ConsolidationError(
                f"{self.out} was started for {self.job['steps']} steps; --steps cannot shrink"
            )
        self.knowledge = None if self.job["knowledge_version_id"] is None else (
            self.store.knowledge_text(self.job["knowledge_version_id"])
        )  # fmt: skip

        try:  # a packed ternary start continues from its latent weights
            start = trainable_start(self.job["student"], cfg.student)
        except TernaryError as err:
            raise ConsolidationError(str(err)) from None
        self.student, self.tokenizer = load_model(start, dtype=torch.float32, device=self.device)
        if cfg.student == "ternary":  # the dense start stays the teacher; the student trains ternary
            convert(self.student, cfg.pattern, per_row_scale=cfg.scale == "row")
        self.teacher = None
        if cfg.needs_teacher():
            self.teacher, teacher_tokenizer = load_model(
                self.job["teacher"], dtype=torch.float32, device=self.device
            )
            self.teacher.requires_grad_(False)
            if teacher_tokenizer.get_vocab() != self.tokenizer.get_vocab() or (
                self.teacher.get_output_embeddings().weight.shape[0]
                != self.student.get_output_embeddings().weight.shape[0]
            ):
                raise ConsolidationError(
                    f"teacher {self.job['teacher']} does not share the student's vocabulary"
                )
            self.teacher_tokenizer = teacher_tokenizer
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        trainable = [p for p in self.student.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)

        saved = ckpt.snapshots(self.out)
        if saved:
            state = ckpt.load_snapshot(saved[-1][1], self.student, self.optimizer)
            self.start_step = state["step"]
            self.pending = list(state.get("metrics", []))
            self._flush_metrics()
        self.job["steps"] = cfg.steps
        ckpt.write_job(self.out, self.job)

    def _new_job(self, run_id: int, steps: Any) -> dict[str, Any]:
        """Resolve what 'default' means for this round, open the consolidation row, and record both."""
        cfg = self.config
        student = str(resolve_model_path(cfg.model or round_checkpoint_path(self.store, steps)))
        teacher = str(resolve_model_path(cfg.teacher)) if cfg.teacher else student
        knowledge_id = cfg.knowledge
        if knowledge_id is None and cfg.needs_knowledge():
            latest = self.store.latest_knowledge_version(run_id)
            if latest is None:
                raise ConsolidationError(
                    f"run {cfg.run!r} has no extracted knowledge version; run `oel knowledge extract` first "
                    "or pass --knowledge VERSION"
                )
            knowledge_id = latest[0]
        if knowledge_id is not None:
            self.store.knowledge_text(knowledge_id)  # a clear StoreError for an unknown id
        round_id = self.store.start_round(run_id, cfg.round)
        parent_id = self.store.checkpoint_for_path(student, run_id=run_id)
        hparams = {  # the paths under their own keys: `student` is the setting (dense or ternary)
            **cfg.settings(), "student_path": student, "teacher_path": teacher, "prompts": len(self.examples),
        }
        consolidation_id = self.store.start_consolidation(
            run_id=run_id, round_id=round_id, method=cfg.method, hparams=hparams,
            knowledge_version_id=knowledge_id, parent_checkpoint_id=parent_id,
        )  # fmt: skip
        return {
            "settings": cfg.settings(), "consolidation_id": consolidation_id, "run_id": run_id,
            "round_id": round_id, "parent_checkpoint_id": parent_id, "knowledge_version_id": knowledge_id,
            "student": student, "teacher": teacher, "hparams": hparams,
        }  # fmt: skip

    # ------------------------------------------------------------------ one step

    def _responses(self, examples: list[Example], step: int) -> tuple[list[list[int]], list[list[int]]]:
        """(student prompt ids, response ids) for a batch, per method."""
        cfg = self.config
        student_prompts = [encode_chat(self.tokenizer, build_messages(e.state)) for e in examples]
        if cfg.method == "sft":
            return student_prompts, [list(e.completion_ids) for e in examples]
        params = SamplingParams(
            temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k,
            max_new_tokens=cfg.max_new_tokens, seed=cfg.seed * 1_000_003 + step,
        )  # fmt: skip
        if cfg.method == "opcd":  # the student samples, WITHOUT knowledge
            self.student.eval()
            policy = HFPolicy.from_model(self.student, self.tokenizer)
            completions = policy.generate([build_messages(e.state) for e in examples], params)
        else:  # offpolicy: the teacher samples, WITH knowledge
            policy = HFPolicy.from_model(self.teacher, self.teacher_tokenizer)
            completions = policy.generate([build_messages(e.state, self.knowledge) for e in examples], params)
        return student_prompts, [c.token_ids for c in completions]

    def train_step(self, step: int) -> dict[str, Any]:
        """Run optimizer step `step` (from 1) on a freshly sampled batch; return its metrics."""
        cfg = self.config
        started = time.perf_counter()

        # ---- 1. a batch of logged states, in the order fixed by (seed, step)
        indices = batch_indices(len(self.examples), cfg.batch, step - 1, cfg.seed)
        examples = [self.examples[i] for i in indices]

        # ---- 2. responses: the student samples without knowledge (opcd), the teacher with it
        #         (offpolicy), or the logged wins (sft)
        student_prompts, responses = self._responses(examples, step)
        student_batch = pack(student_prompts, responses, self.pad_id, self.device)

        # ---- 3. score them: the student with gradient, the teacher (knowledge in its prompt) without
        self.student.train()
        logits = response_logits(self.student, student_batch)
        if cfg.method == "sft":
            per_token = token_nll(logits, student_batch.targets)
        else:
            teacher_prompts = [
                encode_chat(self.teacher_tokenizer, build_messages(e.state, self.knowledge)) for e in examples
            ]
            teacher_batch = pack(teacher_prompts, responses, self.pad_id, self.device)
            with torch.no_grad():
                teacher_hidden = response_hidden(self.teacher, teacher_batch)
            token_kl = opcd_token_kl if cfg.method == "opcd" else offpolicy_token_kl
            per_token = token_kl(
                logits,
                teacher_hidden,
                self.teacher.get_output_embeddings(),
                cfg.temperature,
                cfg.topk,
                cfg.chunk,
            )
        loss = per_token.mean()

        # ---- 4. one AdamW step on this batch, gradient norm clipped
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.student.parameters(), cfg.grad_clip)
        self.optimizer.step()

        metrics: dict[str, Any] = {
            "step": step,
            "loss": float(loss.detach()),
            "tokens": int(per_token.numel()),
            "seconds": time.perf_counter() - started,
            "lr": self.optimizer.param_groups[0]["lr"],
            "grad_norm": float(grad_norm),
        }
        if cfg.method != "sft":
            metrics["kl"] = metrics["loss"]
        return metrics

    # ------------------------------------------------------------------ the loop

    def train(self, on_step: Callable[[dict[str, Any]], None] | None = None) -> ConsolidationResult:
        """Run the remaining steps, saving every `save_every`, then write the final HF folder."""
        cfg = self.config
        metrics: list[dict[str, Any]] = []
        if self.done_checkpoint is None:
            for step in range(self.start_step + 1, cfg.steps + 1):
                row = self.train_step(step)
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

    # ------------------------------------------------------------------ saving

    def save_checkpoint(self, step: int) -> None:
        """Snapshot weights + optimizer after `step`, then log the snapshot's metrics in the store."""
        ckpt.save_snapshot(self.out, step, self.student, self.optimizer, {"metrics": self.pending})
        self._flush_metrics()

    def _flush_metrics(self) -> None:
        """Log the pending steps the store does not have yet (a resumed run may find some logged)."""
        cid = self.job["consolidation_id"]
        with self.store.engine.connect() as conn:
            stmt = select(ConsolidationStep.step).where(ConsolidationStep.consolidation_id == cid)
            logged = set(conn.execute(stmt).scalars())
        for row in self.pending:
            if row["step"] not in logged:
                self.store.log_consolidation_step(
                    cid, row["step"], {k: v for k, v in row.items() if k != "step"}
                )
        self.pending = []

    def _finish(self) -> int:
        """Write the final HF folder, register it, close the consolidation row; return the checkpoint id."""
        fmt, bits = "hf", None
        if self.config.student == "ternary":
            fmt, bits = PACKED_FMT, save_consolidated(self.student, self.tokenizer, self.out)
        else:
            self.student.save_pretrained(str(self.out))
            self.tokenizer.save_pretrained(str(self.out))
        job = self.job
        checkpoint_id = self.store.register_checkpoint(
            path=str(self.out.resolve()), parent_id=job["parent_checkpoint_id"], run_id=job["run_id"],
            round_id=job["round_id"], method=self.config.method, fmt=fmt, bits_per_weight=bits,
            meta={"hparams": job["hparams"], "consolidation_id": job["consolidation_id"],
                  "knowledge_version_id": job["knowledge_version_id"]},
        )  # fmt: skip
        job["checkpoint_id"] = checkpoint_id
        ckpt.write_job(self.out, job)
        self.store.finish_consolidation(job["consolidation_id"], checkpoint_id)
        ckpt.remove_snapshots(self.out)
        return checkpoint_id

    def cleanup(self) -> None:
        """Drop the models so their memory can be reclaimed."""
        for name in ("student", "teacher", "optimizer"):
            if hasattr(self, name):
                delattr(self, name)


def make_consolidator(config: ConsolidateConfig, store: ExperienceStore) -> Consolidator:
    """The job for `config.method`: this module's Consolidator, or `distill.rl`'s for rl and opcd+rl."""
    if config.method in ("rl", "opcd+rl"):
        from distill.rl import RLConsolidator  # distill.rl builds on this module

        return RLConsolidator(config, store)
    return Consolidator(config, store)


def consolidate(
    config: ConsolidateConfig, store: ExperienceStore, on_step: Callable[[dict[str, Any]], None] | None = None
) -> ConsolidationResult:
    """Run (or resume) one consolidation job end to end; see the module docstring."""
    job = make_consolidator(config, store)
    try:
        job.setup()
        return job.train(on_step)
    finally:
        job.cleanup()
