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
a safetensors file in `out/best/`, with the step and rate in `job.json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors.torch import load_model, save_model

from agent.hf_policy import HFPolicy
from agent.policy import SamplingParams
from agent.rollout import EpisodeTags, RolloutConfig, run_rollouts
from envs.grid.solver import count_optimal
from memory import queries
from memory.store import ExperienceStore

VALIDATION_SPLIT = "val"
BEST_DIR = "best"


def policy_name(consolidation_id: int, step: int) -> str:
    """The policy label of one validation's episodes."""
    return f"val:c{consolidation_id}:s{step}"


def validate(
    store: ExperienceStore, model: Any, tokenizer: Any, *, run_id: int, consolidation_id: int, step: int,
    env_id: str, env_kwargs: dict, episodes: int, action_mode: str, max_new_tokens: int,
    trunk_layers: int | None = None,
) -> tuple[float, float | None]:  # fmt: skip
    """Greedy pass rate and step accuracy (None where no solver judges the moves) of `model` on the
    validation tasks after `step` (played now, or found stored); with `trunk_layers`, scored through the
    trunk cache (the same tasks are validated at every gate)."""
    name = policy_name(consolidation_id, step)
    seeds = list(range(episodes))
    stored = queries.episodes(store, run=run_id, policy=name, split=VALIDATION_SPLIT, env=env_id)
    have = set(stored["seed"].astype(int))
    missing = [s for s in seeds if s not in have]
    if missing:
        model.eval()
        rollout = RolloutConfig(
            env_id=env_id, split=VALIDATION_SPLIT, batch=min(32, len(missing)), env_kwargs=dict(env_kwargs),
            sampling=SamplingParams(temperature=0, max_new_tokens=max_new_tokens), action_mode=action_mode,
        )  # fmt: skip
        policy = HFPolicy.from_model(model, tokenizer, name=name, trunk_layers=trunk_layers)
        run_rollouts(policy, store, rollout, tags=EpisodeTags(run_id=run_id), seeds=missing)
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
