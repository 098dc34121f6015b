"""Reference policies for the grid games, played like any model: a solver, random, and a blind sequence.

A pass rate needs a ceiling and floors beside it, measured on the same tasks
through the same rollout and store, so that their episodes show up in
`oel store`, the report and the viewer like any other. This backend is that:
it reads the prompt the environment's observation was put in, exactly as a
model would, and answers with a bracketed move (text mode; it has no tokens,
so token ids and log-probs are recorded as missing, as for a LangChain model).

The backend's `model` names the policy:

    solver                 a shortest winning move from the grid drawn in the prompt
                           (envs.grid.solver); a random move where no win fits
    random                 a uniformly random move of up, down, left, right
    random:down,right      a uniformly random move of those named
    blind:up,down,right,.. the fixed sequence; move i at step i, read off "Steps left"
                           (envs.grid.reference.best_blind finds the best one on train maps)

Randomness is seeded by the sampler's seed, so a run with `seed` set replays.
Grid games only: the solver and the blind index read the grid game's text.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

from agent.policy import Completion, Conversation, PolicyError, SamplingParams
from envs.grid.moves import DELTAS
from envs.grid.solver import optimal_moves_of_text, parse_observation

KINDS = ("solver", "random", "blind")


class ReferencePolicy:
    """A solver, random or blind policy for the grid games (see the module docstring)."""

    tokenizer = None
    can_score = False

    def __init__(self, model: str | None = None, *, name: str | None = None) -> None:
        kind, _, arg = (model or "").partition(":")
        if kind not in KINDS:
            raise PolicyError(
                f"the reference backend's model is one of solver, random[:moves], blind:moves; got {model!r}"
            )
        moves = [m.strip() for m in arg.split(",") if m.strip()] if arg else []
        unknown = [m for m in moves if m not in DELTAS]
        if unknown:
            raise PolicyError(
                f"unknown move(s) {', '.join(unknown)} in {model!r}; moves are {', '.join(DELTAS)}"
            )
        if kind == "blind" and not moves:
            raise PolicyError("blind needs its move sequence, e.g. blind:down,down,right,right")
        self.kind = kind
        self.moves = moves or list(DELTAS)
        self.name = name or f"reference:{model}"
        self._calls = 0

    def _move(self, prompt: str, rng: random.Random) -> str:
        if self.kind == "blind":
            state = parse_observation(prompt)
            if state is None:
                raise PolicyError("the blind reference policy reads grid games only: no grid in the prompt")
            index = min(max(len(self.moves) - state.steps_left, 0), len(self.moves) - 1)
            return self.moves[index]
        if self.kind == "solver":
            best = optimal_moves_of_text(prompt)
            if best is None:
                raise PolicyError("the solver reference policy reads grid games only: no grid in the prompt")
            if best:
                return best[0]
        return rng.choice(self.moves)

    def generate(self, conversations: Sequence[Conversation], params: SamplingParams) -> list[Completion]:
        """One bracketed move per conversation, read from its last user message."""
        start = time.perf_counter()
        seed = None if params.seed is None else params.seed * 1_000_003 + self._calls
        rng = random.Random(seed)
        self._calls += 1
        moves = [self._move(conversation[-1]["content"], rng) for conversation in conversations]
        latency = time.perf_counter() - start
        return [
            Completion(f"[{m}]", token_ids=None, logprobs=None, prompt_ids=None, finish_reason="stop",
                       latency_s=latency)
            for m in moves
        ]  # fmt: skip
