"""The settings every consolidation method shares (`JobConfig`), and how flat settings split into them.

A job's settings are `JobConfig` plus the chosen method's own `Config`
(`distill.methods`); the command-line flags of `oel consolidate` and the keys
of a run file's `[consolidate]` table are generated from the two dataclasses
(`distill.config_fields`), so each default is written once, here or in the
method. `LOGISTICS` names the fields a resumed job may change (how long,
where, whether a zero teacher gap stops it; not what it trains); every
other field must match the folder's job record (`distill.checkpointing.JobRecord`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.policy import DEFAULT_SAMPLING
from distill.errors import ConsolidationError
from distill.losses import DEFAULT_CHUNK
from distill.students import FORMS, SCALES
from distill.ternary.config import PATTERNS


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
    temperature: float = DEFAULT_SAMPLING.temperature
    """Rollout temperature T: sampling and every KL and log-prob use logits / T."""
    top_p: float = DEFAULT_SAMPLING.top_p
    """Sampler nucleus threshold (the deployed setting; losses still use the full vocabulary)."""
    top_k: int = DEFAULT_SAMPLING.top_k
    """Sampler top-k (the deployed setting; 0 = off)."""
    max_new_tokens: int = DEFAULT_SAMPLING.max_new_tokens
    """Longest sampled response, in tokens."""
    model: str | None = None
    """Student start; None: the checkpoint the round was played with, else the embedded model."""
    teacher: str | None = None
    """Teacher checkpoint sharing the vocabulary; None: a frozen copy of the student's start."""
    knowledge: int | None = None
    """Knowledge version id in the teacher's prompt; None: the run's latest (extracted or authored)."""
    teacher_knowledge: bool = True
    """Methods with a teacher: splice the knowledge into the teacher's prompt (OEL's OPCD); false: the teacher
    is the `teacher` checkpoint as it is (on-policy distillation, e.g. from the run's best dense model)."""
    require_gap: bool = True
    """opcd and offpolicy: measure teacher and student on the val tasks first, and stop unless the teacher is
    better (a teacher no better than its student has nothing to teach); false: go on anyway."""
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
    """Scored methods with train_layers: compute the frozen blocks once per state and run only the trained
    top blocks each step (exact; agent.trunk_cache); a ternary student's frozen blocks are ternary too."""
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


LOGISTICS = ("steps", "save_every", "device", "out", "require_gap")
"""JobConfig fields a resumed job may change (how long, where, and whether a measured teacher gap of 0
stops it; not what it trains)."""


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
