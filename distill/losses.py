"""Consolidation losses on flat response tokens: top-k reverse KL (OPCD), top-k forward KL, token NLL.

Every function works on N response tokens laid out as rows (the batch is
flattened before it gets here), so padding never reaches a loss: the caller
gathers the hidden states of the positions that predict a response token.

OPCD's per-token loss is

    KL_t = sum_{v in TopK_student(t)} p_s(v) * (log p_s(v) - log p_t(v))

with both log-probabilities taken from the FULL-vocabulary log-softmax of
logits / T, not renormalised over the k kept ids (as in the reference
implementation, microsoft/LMOps `opcd/`, with `kl_renorm_topk=False`). With
k = vocab it is exactly KL(student || teacher). With smaller k it drops the
student's tail mass; that partial sum is not itself a divergence and can
dip below zero, which is fine for a gradient and worth knowing when reading
logged values.

Memory, which is the point of the shape:

- The student keeps its [N, V] logits (every logit gets a gradient through
  the log-normaliser, so they exist anyway), but its log-probabilities are
  taken only at the k ids: `z[ids] - logsumexp(z)`, no second [N, V] tensor.
- The teacher never materialises [N, V]: its output head is applied to
  hidden states `chunk` rows at a time under `no_grad`, each chunk is
  log-softmaxed over the full vocabulary and only the k wanted columns are
  kept, so the transient is [chunk, V] and the result [N, k].

Only the student carries gradient; the teacher's functions run under
`torch.no_grad()` and return detached tensors.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

DEFAULT_TOPK = 256
"""k of the top-k KLs (OPCD's default)."""
DEFAULT_CHUNK = 512
"""Rows of teacher hidden states turned into logits at a time."""

Head = Callable[[Tensor], Tensor]


def logprobs_at(logits: Tensor, ids: Tensor, temperature: float | Tensor = 1.0) -> Tensor:
    """`log_softmax(logits / T)` over the full vocabulary, evaluated only at `ids` ([N, V] -> [N, k]);
    T is one number, or an [N, 1] tensor of per-row temperatures."""
    z = logits.float() / temperature
    return z.gather(-1, ids) - torch.logsumexp(z, dim=-1, keepdim=True)


def student_topk(logits: Tensor, temperature: float, k: int = DEFAULT_TOPK) -> tuple[Tensor, Tensor]:
    """The student's k most likely ids per row and their (differentiable) log-probabilities at T."""
    ids = logits.detach().topk(min(k, logits.shape[-1]), dim=-1).indices
    return logprobs_at(logits, ids, temperature), ids


@torch.no_grad()
def teacher_logprobs_at(
    hidden: Tensor, head: Head, ids: Tensor, temperature: float, chunk: int = DEFAULT_CHUNK
) -> Tensor:
    """Teacher log-probabilities at T for the given ids, its head applied `chunk` rows at a time.

    `hidden` is [N, H] (the teacher body's output at the response positions),
    `head` maps [n, H] to [n, V] logits, `ids` is [N, k]. Returns [N, k] float32.
    """
    out = torch.empty(ids.shape, dtype=torch.float32, device=ids.device)
    for start in range(0, hidden.shape[0], chunk):
        end = start + chunk
        out[start:end] = logprobs_at(head(hidden[start:end]), ids[start:end], temperature)
    return out


@torch.no_grad()
def teacher_topk(
    hidden: Tensor, head: Head, temperature: float, k: int = DEFAULT_TOPK, chunk: int = DEFAULT_CHUNK
) -> tuple[Tensor, Tensor]:
    """The teacher's k most likely ids per row and their log-probabilities at T, chunked as above."""
    logps, ids = [], []
    for start in range(0, hidden.shape[0], chunk):
        z = torch.log_softmax(head(hidden[start : start + chunk]).float() / temperature, dim=-1)
        top = z.topk(min(k, z.shape[-1]), dim=-1)
        logps.append(top.values)
        ids.append(top.indices)
    return torch.cat(logps), torch.cat(ids)


def reverse_kl_topk(student_logp: Tensor, teacher_logp: Tensor) -> Tensor:
    """Per row, sum over the k kept ids of p_s * (log p_s - log p_t); both [N, k] at the same ids."""
    return (student_logp.exp() * (student_logp - teacher_logp)).sum(-1)


def forward_kl_topk(teacher_logp: Tensor, student_logp: Tensor) -> Tensor:
    """Per row, sum over the k kept ids of p_t * (log p_t - log p_s); both [N, k] at the same ids."""
    return (teacher_logp.exp() * (teacher_logp - student_logp)).sum(-1)


def opcd_token_kl(
    student_logits: Tensor,
    teacher_hidden: Tensor,
    teacher_head: Head,
    temperature: float,
    k: int = DEFAULT_TOPK,
    chunk: int = DEFAULT_CHUNK,
) -> Tensor:
    """OPCD's per-token loss [N]: reverse KL over the student's top-k, gradient into the student only."""
    student_logp, ids = student_topk(student_logits, temperature, k)
    teacher_logp = teacher_logprobs_at(teacher_hidden, teacher_head, ids, temperature, chunk)
    return reverse_kl_topk(student_logp, teacher_logp)


def offpolicy_token_kl(
    student_logits: Tensor,
    teacher_hidden: Tensor,
    teacher_head: Head,
    temperature: float,
    k: int = DEFAULT_TOPK,
    chunk: int = DEFAULT_CHUNK,
) -> Tensor:
    """Off-policy baseline's per-token loss [N]: forward KL over the teacher's top-k."""
    teacher_logp, ids = teacher_topk(teacher_hidden, teacher_head, temperature, k, chunk)
    return forward_kl_topk(teacher_logp, logprobs_at(student_logits, ids, temperature))


def token_nll(logits: Tensor, targets: Tensor) -> Tensor:
    """SFT's per-token loss [N]: negative log-likelihood of the target ids at T = 1."""
    return F.cross_entropy(logits.float(), targets, reduction="none")
