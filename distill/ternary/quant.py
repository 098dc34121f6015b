"""The quantizers of a sparse-ternary student, as plain functions.

Everything numeric lives here so that the training layer (BitLinear), the
packer and the kernel's reference all call the very same code; the packed
round trip and the kernel tests are exact because of that.

Choices worth knowing:
- Scales are computed in float32 whatever the weight dtype, and the quantized
  weight is built as int8 codes first and only then divided by the scale. Going
  through int8 makes every pruned or rounded-away entry a +0.0, so the float
  weight a student trains with equals the one unpacked from disk bit for bit.
- The N:M mask ranks the latent full-precision |W|, never the ternary codes
  (which are mostly ties), and the scale is taken over the unmasked weights.
- Straight-through estimators: the forward pass sees the quantized, masked
  values, the backward pass is the identity, so pruned weights still get
  gradients and can win their place back at the next forward. They are
  written q + (w - w.detach()), whose value is q exactly; w + (q - w).detach()
  is q only up to a rounding, and a student fed 8-bit activations amplifies
  such roundings (README, "Sparse-ternary students").
- Exact ties at the mask's boundary (a pruned |w| equal to a kept one) are
  opened by `separate_mask_ties` when a dense layer becomes a BitLinear. Weights
  that went through a quantized file (the embedded SmolLM2 comes from a
  GGUF) sit on a coarse grid, so about one 2:4 group in six has such a tie;
  left alone, the first optimizer step of any size breaks every one of them
  in the gradient's favour, and a whole quantization step of weight changes
  place in each.
"""

from __future__ import annotations

import torch

from distill.ternary.config import TernaryConfig, TernaryError

EPS = 1e-5
"""Floor under mean|W| and under the activation absmax, so all-zero rows do not divide by zero."""
TIE_MARGIN = 0.01
"""Relative gap `separate_mask_ties` opens between a kept and a pruned weight of equal magnitude."""


def weight_scale(w: torch.Tensor, per_row: bool) -> torch.Tensor:
    """s = 1/mean|W| in float32: shape (1,) per tensor, (out_features,) per row."""
    a = w.detach().float().abs()
    mean = (a.mean(dim=1) if per_row else a.mean().reshape(1)).clamp(min=EPS)
    return torch.ones_like(mean) / mean


def groups(t: torch.Tensor, m: int) -> torch.Tensor:
    """(rows, in) -> (rows, groups, m): each row's consecutive inputs in groups of m, zero-padded."""
    return torch.nn.functional.pad(t, (0, -t.shape[1] % m)).reshape(t.shape[0], -1, m)


def nm_mask(w: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Boolean mask keeping the top-n |w| in every group of m consecutive inputs of each row.

    A trailing partial group (in_features not a multiple of m) is padded with
    zeros, which never outrank a real nonzero weight.
    """
    if w.dim() != 2:
        raise TernaryError(f"N:M masks are for 2-D weights, got shape {tuple(w.shape)}")
    out_f, in_f = w.shape
    a = groups(w.detach().abs(), m)
    keep = torch.zeros(a.shape, dtype=torch.bool, device=w.device)
    keep.scatter_(-1, a.topk(n, dim=-1).indices, True)
    return keep.reshape(out_f, -1)[:, :in_f]


def quantize_weight(w: torch.Tensor, config: TernaryConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Ternary int8 codes in {-1, 0, 1} (masked when the pattern asks) and the float32 scale s."""
    s = weight_scale(w, config.per_row_scale)
    codes = torch.clamp(torch.round(w.detach().float() * s[:, None]), -1, 1).to(torch.int8)
    if config.n_m is not None:
        codes = torch.where(nm_mask(w, *config.n_m), codes, torch.zeros_like(codes))
    return codes, s


def dequantize_weight(
    codes: torch.Tensor, s: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Float weight codes / s, the effective weight of a student."""
    return (codes.float() / s[:, None]).to(dtype)


def fake_quant_weight(w: torch.Tensor, config: TernaryConfig) -> torch.Tensor:
    """Q(W)*mask in the forward pass, bit for bit, and an identity gradient to every latent weight (STE)."""
    q = dequantize_weight(*quantize_weight(w, config), dtype=w.dtype)
    return q + (w - w.detach())


def separate_mask_ties(w: torch.Tensor, n: int, m: int, margin: float = TIE_MARGIN) -> None:
    """Open a gap where a kept and a pruned |w| of an N:M group are exactly equal.

    In place: the kept weights at the tie grow by margin/2 of their magnitude,
    the pruned ones shrink by as much, so the mask (and, for one kept against
    one pruned, mean|W|) stays what it was.
    """
    out_f, in_f = w.shape
    a = groups(w.detach().abs(), m)
    keep = groups(nm_mask(w, n, m), m)
    big = torch.finfo(a.dtype).max
    smallest_kept = torch.where(keep, a, big).amin(dim=-1, keepdim=True)
    largest_pruned = torch.where(keep, -big, a).amax(dim=-1, keepdim=True)
    tied = (smallest_kept == largest_pruned) & (smallest_kept > 0)
    up = tied & keep & (a == smallest_kept)
    down = tied & ~keep & (a == largest_pruned)
    factor = 1 + margin / 2 * (up.to(a.dtype) - down.to(a.dtype))
    w.mul_(factor.reshape(out_f, -1)[:, :in_f])


def quantize_activations(x: torch.Tensor, bits: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Absmax per-token quantization: float32 integer values and the per-token scale (shape [..., 1])."""
    qmax = 2 ** (bits - 1) - 1
    xf = x.detach().float()
    amax = xf.abs().amax(dim=-1, keepdim=True).clamp(min=EPS)
    sx = torch.full_like(amax, qmax) / amax  # a true division: `qmax / amax` would be reciprocal()*qmax
    return torch.clamp(torch.round(xf * sx), -qmax - 1, qmax), sx


def fake_quant_activations(x: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Quantize-dequantize activations in the forward pass, bit for bit, and an identity gradient (STE)."""
    xq, sx = quantize_activations(x, bits)
    return (xq / sx).to(x.dtype) + (x - x.detach())
