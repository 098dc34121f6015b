"""RL losses on flat response tokens: group advantages, GRPO's clipped token loss, GMPO, the k3 KL.

Everything here is a pure function of tensors, so the tests can check each
one against a hand computation. Tokens are laid out as rows, as in
`distill.losses`: the trainer gathers the N response tokens of a batch,
each with its new log-probability (with gradient), its behaviour
log-probability (the one recorded in the store when the token was sampled),
the advantage of the episode it belongs to, and that episode's index.

- `group_advantages`: GRPO's A_i = (r_i - mean(r)) / (std(r) + eps) within a
  group of G episodes that played the same task. A group whose rewards are
  all equal has A = 0 everywhere: it carries no gradient, only cost, so it is
  masked out (and the trainer counts it). std is the population std
  (divide by G), so two episodes with rewards 0 and 1 get A = -1 and +1.
- `grpo_token_loss`: PPO's pessimistic clipped surrogate per token,
  -min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A) with rho = exp(logp - logp_old).
  The caller averages over ALL tokens of the batch (token-level aggregation,
  as DAPO argues), so a long reply weighs by its tokens, not as one sample.
- `gmpo_loss`: Geometric-Mean Policy Optimization (Zhao et al. 2025). Per
  sequence, the geometric mean of the token ratios,
  exp(mean_t clip_sgn(A)(log rho_t)), times A, where each token's log-ratio is
  clipped to [-eps_low, eps_high] pessimistically in the direction of the
  advantage's sign; the loss is minus its mean over sequences. A token with
  an outlying ratio moves a geometric mean far less than an arithmetic one.
- `k3_kl`: Schulman's low-variance, always non-negative per-token estimator of
  KL(pi || pi_ref) on samples from pi: exp(d) - d - 1 with d = logp_ref - logp.
"""

from __future__ import annotations

import torch
from torch import Tensor


def group_advantages(rewards: Tensor, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Advantages [n_groups, G] normalised within each group, and the mask [n_groups] of groups with signal.

    `rewards` is [n_groups, G]. Groups whose rewards are all equal get
    advantage 0 and mask False.
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be [n_groups, G] with G >= 2, got shape {tuple(rewards.shape)}")
    rewards = rewards.float()
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, unbiased=False, keepdim=True)
    informative = (rewards.max(dim=1).values - rewards.min(dim=1).values) > 0
    advantages = torch.where(informative[:, None], (rewards - mean) / (std + eps), torch.zeros_like(rewards))
    return advantages, informative


def grpo_token_loss(
    logp: Tensor, old_logp: Tensor, advantages: Tensor, eps_low: float, eps_high: float
) -> tuple[Tensor, Tensor]:
    """Per-token clipped surrogate loss [N] and whether each token's ratio was clipped [N] (bool).

    All arguments are [N]; `advantages` holds each token's episode advantage.
    A token counts as clipped when the clipped term is the one `min` picked and
    it differs from the unclipped one (so its gradient is zero).
    """
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * advantages
    loss = -torch.minimum(unclipped, clipped)
    return loss, (clipped < unclipped).detach()


def gmpo_loss(
    logp: Tensor,
    old_logp: Tensor,
    seq_advantages: Tensor,
    seq_index: Tensor,
    eps_low: float,
    eps_high: float,
) -> tuple[Tensor, Tensor]:
    """GMPO's loss (a scalar, mean over sequences) and the per-token clipped flags [N] (bool).

    `logp`, `old_logp` and `seq_index` are [N] (`seq_index[t]` in
    0..n_seq-1 names token t's sequence); `seq_advantages` is [n_seq]. Every
    sequence must own at least one token.
    """
    n_seq = seq_advantages.shape[0]
    log_ratio = logp - old_logp
    sign = torch.where(seq_advantages >= 0, 1.0, -1.0)[seq_index]
    bounded = torch.clamp(log_ratio, -eps_low, eps_high)
    kept = sign * torch.minimum(sign * log_ratio, sign * bounded)
    counts = torch.zeros(n_seq, dtype=kept.dtype, device=kept.device).index_add_(
        0, seq_index, torch.ones_like(kept)
    )
    if bool((counts == 0).any()):
        raise ValueError("every sequence needs at least one token")
    mean_log_ratio = torch.zeros_like(counts).index_add(0, seq_index, kept) / counts
    loss = -(seq_advantages * torch.exp(mean_log_ratio)).mean()
    return loss, (kept != log_ratio).detach()


def k3_kl(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Per-token k3 estimate of KL(policy || reference) on the policy's own samples [N]; >= 0."""
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1.0
