"""BitLinear: the training-time layer of a sparse-ternary student.

It is an `nn.Linear` subclass that keeps the latent full-precision weight as
its parameter and quantizes on the fly (fake quantization with straight-through
estimators, see `quant.py`). Subclassing `nn.Linear` keeps the state dict keys
of the dense model, so a student checkpoint is an ordinary HF checkpoint plus
a `TernaryConfig`, and anything in transformers that special-cases linear
layers (initialisation, tied-weight bookkeeping, device moves) keeps working.

Without autograd (a student sampling its own responses in OPCD, evaluation)
the layer reuses Q(W)*mask until the latent weight changes (tracked by the
tensor's in-place version counter), instead of re-ranking and re-quantizing
every weight at every decoded token: on SmolLM2 that recomputation, not the
matmul, dominated sampling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distill.ternary.config import TernaryConfig
from distill.ternary.quant import (
    dequantize_weight,
    fake_quant_activations,
    fake_quant_weight,
    quantize_weight,
    separate_mask_ties,
)


class BitLinear(nn.Linear):
    """Linear layer with ternary N:M-sparse weights and 8-bit absmax activations."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        config: TernaryConfig | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.config = config or TernaryConfig()
        self._frozen: tuple[tuple[int, int], torch.Tensor] | None = None

    @classmethod
    def from_linear(cls, linear: nn.Linear, config: TernaryConfig) -> BitLinear:
        """Wrap an existing linear layer, sharing (not copying) its weight and bias parameters.

        Exact ties at the N:M mask's boundary are opened in the shared weight
        first (`quant.separate_mask_ties`), so the first optimizer step does not
        break up the mask the layer starts with.
        """
        if config.n_m is not None:
            with torch.no_grad():
                separate_mask_ties(linear.weight, *config.n_m)
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer.in_features, layer.out_features = linear.in_features, linear.out_features
        layer.weight = linear.weight
        layer.bias = linear.bias
        layer.config = config
        layer._frozen = None
        return layer

    def effective_weight(self) -> torch.Tensor:
        """The weight the forward pass uses: Q(W)*mask, without gradient."""
        return dequantize_weight(*quantize_weight(self.weight, self.config), dtype=self.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            self._frozen = None
            w = fake_quant_weight(self.weight, self.config)
        else:
            key = (self.weight.data_ptr(), self.weight._version)
            if self._frozen is None or self._frozen[0] != key:
                self._frozen = (key, self.effective_weight())
            w = self._frozen[1]
        return F.linear(fake_quant_activations(x, self.config.act_bits), w, self.bias)

    def extra_repr(self) -> str:
        cfg = self.config
        settings = f"pattern={cfg.pattern}, per_row_scale={cfg.per_row_scale}, act_bits={cfg.act_bits}"
        return f"{super().extra_repr()}, {settings}"
