"""The stability guards of a consolidation: the pass rate every K steps, and keeping the best weights.

RL on a small model can climb and then collapse (RAGEN's PPO on FrozenLake
fell to 0% within 90 steps). With `eval_every = K` the job plays the live
student greedily on a fixed set of validation tasks before training and
after every K steps, logs the pass rate with the step, and with `keep_best`
the deployed checkpoint is the best-scoring weights seen, not the last.

"Best" is the pass rate first, then, for games with a solver (the grid
games), the validation step accuracy: the share of visited states whose move
was optimal. Pass rates tie often at small sizes (a round that validates 0/36
at every check), and there the tie-break keeps weights that moved towards
the right moves instead of any that did not; measured on FrozenLake 4x4, a
round whose checks all read 0/36 otherwise deployed weights with step
accuracy 0.13 against its start's 0.55. A full tie goes to the later weights.

The validation tasks are the first `episodes` seeds of the `val` split
(envs/splits.py), never the held-out test tasks nor the train tasks: choosing
the checkpoint on the test tasks would bias the test pass rate that the loop
and the benchmarks report. Where the environment splits its tasks (FrozenLake
4x4, Sokoban, TextWorld, tool tasks) no validation task is ever trained on or
tested on; FrozenLake 3x3 has only 19 maps, which all splits share, so there
what validation measures is the policy, greedily, on a fixed set of seeds.

Episodes go to the store like any other, under the run with no round and no
checkpoint and the policy name `val:c<consolidation>:s<step>`, so round
statistics and watch-mode claims never count them, and a resumed job reuses
a step's stored episodes instead of playing them again. The best weights are
a safetensors file in `out/best/`, with the step and rate in `job.json`
(`distill.checkpointing.ValidationRecord`).

`gate(job, step)` is what the job shell calls: it validates (or, for the
start, reuses the figure the previous job left for exactly these weights on
exactly these tasks), records it, and keeps the weights when they are the best.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from safetensors.torch import load_model, save_model

from agent.hf_policy import HFPolicy
from agent.policy import SamplingParams
from agent.rollout import EpisodeTags, RolloutConfig, run_rollouts
from distill import checkpointing as ckpt
from distill.data import round_steps
from distill.errors import ConsolidationError
from distill.job_config import JobConfig
from envs.grid.solver import count_optimal
from memory import queries
from memory.replay import owed_seeds
from memory.store import ExperienceStore

VALIDATION_SPLIT = "val"
BEST_DIR = "best"


class GatedJob(Protocol):
    """What the gate reads of the job shell (`distill.job.ConsolidationJob`, which imports this module)."""

    config: JobConfig
    method_config: Any
    store: ExperienceStore
    record: ckpt.JobRecord
    student: Any
    tokenizer: Any
    teacher: Any
    teacher_tokenizer: Any
    knowledge: str | None
    trunk: Any
    out: Path


def policy_name(consolidation_id: int, step: int) -> str:
    """The policy label of one validation's episodes."""
    return f"val:c{consolidation_id}:s{step}"


def validate(
    store: ExperienceStore, model: Any, tokenizer: Any, *, run_id: int, consolidation_id: int, step: int,
    env_id: str, env_kwargs: dict, episodes: int, action_mode: str, max_new_tokens: int,
    trunk_layers: int | None = None, knowledge: str | None = None, name: str | None = None,
) -> tuple[float, float | None]:  # fmt: skip
    """Greedy pass rate and step accuracy (None where no solver judges the moves) of `model` on the
    validation tasks after `step` (played now, or found stored); with `trunk_layers`, scored through the
    trunk cache (the same tasks are validated at every gate); with `knowledge` in every prompt. `name`
    labels the episodes (default: the gate's `val:c<consolidation>:s<step>`)."""
    name = name or policy_name(consolidation_id, step)
    seeds = list(range(episodes))
    stored = queries.episodes(store, run=run_id, policy=name, split=VALIDATION_SPLIT, env=env_id)
    missing = owed_seeds(seeds, stored["seed"])
    if missing:
        model.eval()
        rollout = RolloutConfig(
            env_id=env_id, split=VALIDATION_SPLIT, batch=min(32, len(missing)), env_kwargs=dict(env_kwargs),
            sampling=SamplingParams(temperature=0, max_new_tokens=max_new_tokens), action_mode=action_mode,
        )  # fmt: skip
        policy = HFPolicy.from_model(model, tokenizer, name=name, trunk_layers=trunk_layers)
        run_rollouts(
            policy, store, rollout, knowledge=knowledge, tags=EpisodeTags(run_id=run_id), seeds=missing
        )
    played = queries.episodes(store, run=run_id, policy=name, split=VALIDATION_SPLIT, env=env_id)
    played = played[played["seed"].isin(seeds)].drop_duplicates("seed")
    if not len(played):
        return 0.0, None
    steps = queries.step_actions(store, [int(i) for i in played["id"]])
    counted = count_optimal(steps["state"], steps["action"])
    accuracy = counted[0] / counted[1] if counted else None
    return float(played["won"].astype(bool).mean()), accuracy


def better(rate: float, accuracy: float | None, best_rate: float, best_accuracy: float | None) -> bool:
    """Whether (rate, accuracy) is at least as good as the best so far: the pass rate first, then the step
    accuracy where both have one; a full tie counts as better (the later weights are kept)."""
    if rate != best_rate:
        return rate > best_rate
    if accuracy is None or best_accuracy is None:
        return True
    return accuracy >= best_accuracy


def save_best(model: Any, out: Path) -> None:
    """Keep the model's current weights as the best so far."""
    folder = out / BEST_DIR
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "model.safetensors.tmp"
    save_model(model, str(tmp))
    tmp.replace(folder / "model.safetensors")


def restore_best(model: Any, out: Path) -> None:
    """Load the best weights saved by `save_best` back into the model."""
    load_model(model, str(out / BEST_DIR / "model.safetensors"), strict=True)


def validation_env(job: GatedJob) -> tuple[str, dict]:
    """The environment id and options a job validates on: `eval_env`, else the method's own game, else the
    round's; the options `eval_env_kwargs`, else the method's on the method's game (the run's in a loop)."""
    config = job.config
    own = getattr(job.method_config, "env_id", None)
    env = config.eval_env or own
    if env is None:
        env = round_steps(job.store, config.run, config.round, config.split)["env"].mode()[0]
    if config.eval_env_kwargs is not None:
        return env, dict(config.eval_env_kwargs)
    kwargs = dict(getattr(job.method_config, "env_kwargs", {}) or {}) if env == own else {}
    return env, kwargs


def gate_settings(job: GatedJob) -> dict[str, Any]:
    """What a validation pass rate depends on besides the weights."""
    env, kwargs = validation_env(job)
    config = job.config
    return {"env": env, "env_kwargs": kwargs, "episodes": config.eval_episodes,
            "action_mode": config.action_mode, "max_new_tokens": config.max_new_tokens}  # fmt: skip


def known_start(job: GatedJob) -> tuple[float, float | None] | None:
    """The start's pass rate and step accuracy when the job that made the start validated exactly these
    weights on the same tasks (a loop's round starts from the weights the last round kept), else None."""
    parent = job.record.parent_checkpoint_id
    if parent is None or job.config.student != "dense":
        return None
    done = (job.store.checkpoint_info(parent)["meta"] or {}).get("validation") or {}
    if done.get("kept_step") is None or done.get("settings") != gate_settings(job):
        return None
    return float(done["best_rate"]), done.get("best_accuracy")


def gate(job: GatedJob, step: int) -> tuple[float, float | None]:
    """Validation pass rate and step accuracy after `step` (0: the start), recorded in the job record; with
    keep_best, the weights are kept when they are the best yet (`better`)."""
    env, kwargs = validation_env(job)
    config = job.config
    known = known_start(job) if step == 0 else None
    rate, accuracy = known if known is not None else validate(
        job.store, job.student, job.tokenizer, run_id=job.record.run_id,
        consolidation_id=job.record.consolidation_id, step=step, env_id=env, env_kwargs=kwargs,
        episodes=config.eval_episodes, action_mode=config.action_mode, max_new_tokens=config.max_new_tokens,
        trunk_layers=config.train_layers if job.trunk is not None else None,
    )  # fmt: skip
    if job.record.validation is None:
        job.record.validation = ckpt.ValidationRecord()
    record = job.record.validation
    record.settings = gate_settings(job)
    record.history = [h for h in record.history if h[0] != step] + [[step, rate]]
    if config.keep_best and better(rate, accuracy, record.best_rate, record.best_accuracy):
        save_best(job.student, job.out)
        record.best_step, record.best_rate, record.best_accuracy = step, rate, accuracy
    ckpt.write_job(job.out, job.record)
    return rate, accuracy


def teacher_gap(job: GatedJob) -> dict[str, Any]:
    """The teacher's and the student's greedy pass rate and step accuracy on the job's val tasks, before
    training: the teacher with the knowledge in its prompt (unless `teacher_knowledge` is off), the student
    without. Each plays under its own policy name, so a resumed job finds them stored."""
    env, kwargs = validation_env(job)
    config, record = job.config, job.record
    shared = dict(run_id=record.run_id, consolidation_id=record.consolidation_id, step=0, env_id=env,
                  env_kwargs=kwargs, episodes=config.eval_episodes, action_mode=config.action_mode,
                  max_new_tokens=config.max_new_tokens)  # fmt: skip
    teacher = validate(job.store, job.teacher, job.teacher_tokenizer, knowledge=job.knowledge,
                       name=f"gap:c{record.consolidation_id}:teacher", **shared)  # fmt: skip
    student = validate(job.store, job.student, job.tokenizer, name=f"gap:c{record.consolidation_id}:student",
                       **shared)  # fmt: skip
    return {"env": env, "tasks": config.eval_episodes, "teacher": list(teacher), "student": list(student),
            "teacher_knowledge": job.knowledge is not None}  # fmt: skip


def check_gap(gap: dict[str, Any]) -> None:
    """ConsolidationError, one line naming the figures, unless the teacher beats the student: a higher pass
    rate, or the same and a higher step accuracy."""
    (t_rate, t_acc), (s_rate, s_acc) = gap["teacher"], gap["student"]
    ahead = t_rate > s_rate or (
        t_rate == s_rate and t_acc is not None and s_acc is not None and t_acc > s_acc
    )
    if not ahead:

        def figures(rate: float, acc: float | None) -> str:
            return f"{rate:.1%}" + ("" if acc is None else f", step accuracy {acc:.2f}")

        raise ConsolidationError(
            f"the teacher is no better than the student on {gap['tasks']} val tasks of {gap['env']} (teacher "
            f"{figures(t_rate, t_acc)}; student {figures(s_rate, s_acc)}), so distilling it moves nothing; "
            "pick a better teacher, or set require_gap = false to go on anyway"
        )
