"""The KL from the student to the knowledge-prompted teacher, in both action modes: OPCD's term.

OPCD trains on it alone and OPCD+RL adds it to the RL term, so it has one
home that both methods name (docs/architecture.md, "Consolidation"):

- text mode, per response token: the top-k reverse KL of the student's
  logits at its response positions to the teacher's, the teacher reading the
  same tokens after a prompt with the knowledge spliced in
  (`distill.losses.opcd_token_kl`);
- scored mode, per state: the exact KL(pi_student || pi_teacher) over the
  state's candidates, the teacher scoring them after the knowledge-holding
  scored prompt (`distill.candidates`); or, asked for, the forward
  KL(pi_teacher || pi_student).

The teacher runs under `no_grad`; only the student's inputs carry gradient.
The teacher is frozen for the whole job, so its log pi over a scored state's
candidates is computed once and kept (`ConsolidationJob.teacher_log_pi`): a
state drawn again in a later step costs only the student's forward.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from agent.policy import encode_chat
from agent.prompts import build_scored_messages
from distill.candidates import ScoredState, candidate_log_pi, exact_kl
from distill.losses import opcd_token_kl
from distill.text_batches import pack, response_hidden

if TYPE_CHECKING:
    from distill.job import ConsolidationJob


def token_kl(job: ConsolidationJob, rows: list[Any], student_logits: torch.Tensor, topk: int) -> torch.Tensor:
    """Per response token [N], the top-k reverse KL of the student to the knowledge-prompted teacher.

    `rows` need `state` and `response_ids`; `student_logits` are the student's
    logits at those rows' response positions, in order.
    """
    teacher_batch = pack(
        [job.teacher_prompt_ids(r.state) for r in rows],
        [r.response_ids for r in rows],
        job.pad_id,
        job.device,
    )
    with torch.no_grad():
        teacher_hidden = response_hidden(job.teacher, teacher_batch)
    return opcd_token_kl(
        student_logits, teacher_hidden, job.teacher.get_output_embeddings(), job.config.temperature, topk,
        job.config.chunk,
    )  # fmt: skip


def state_kl(
    job: ConsolidationJob, states: list[ScoredState], student: list[torch.Tensor], forward: bool = False
) -> torch.Tensor:
    """Per state [n], KL(student || knowledge-prompted teacher) over its candidates at the job's T, or with
    `forward` KL(teacher || student); `student` holds the student's log pi over each state's candidates."""
    keys = [
        (tuple(encode_chat(job.teacher_tokenizer, build_scored_messages(s.state, s.commands, job.knowledge))),
         tuple(map(tuple, s.candidate_ids)))
        for s in states
    ]  # fmt: skip
    new = list(dict.fromkeys(k for k in keys if k not in job.teacher_log_pi))
    if new:
        with torch.no_grad():
            scored = candidate_log_pi(
                job.teacher, [list(p) for p, _c in new], [[list(c) for c in cs] for _p, cs in new],
                [job.config.temperature] * len(new), job.pad_id,
            )  # fmt: skip
        job.teacher_log_pi.update(zip(new, scored, strict=True))
    teacher = [job.teacher_log_pi[k] for k in keys]
    pairs = zip(student, teacher, strict=True)
    return torch.stack([exact_kl(t, s) if forward else exact_kl(s, t) for s, t in pairs])
