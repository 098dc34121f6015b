"""Sparse-ternary students: BitLinear training layers, a packed format, and a CPU kernel.

Training: `convert(model, "2:4")` swaps the attention/MLP linears of a Llama-
family model for BitLinear (ternary weights, N:M mask from the latent weights,
8-bit activations, straight-through gradients). Deployment: `pack_model`
freezes the student onto PackedBitLinear layers that run the C++ kernel, and
`save_packed_student` writes the near-entropy packed format (`pack.py`);
`deploy.py` lays out a consolidated student's folder.

Importing this package registers the packed-folder loader with
`agent.model.load_model` (`deploy.register`), so every command that takes a
model path loads packed students. The public names below are imported lazily,
on first use, because the `oel` command imports this package for that
registration and must not pay for torch before a command actually runs.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from distill.ternary.deploy import register as _register

_HOMES = {
    "BitLinear": "bitlinear",
    "PackedBitLinear": "packed_linear",
    "PackedWeight": "pack",
    "TernaryConfig": "config",
    "TernaryError": "config",
    "convert": "student",
    "limit_bits": "pack",
    "load_packed_student": "packed_linear",
    "load_student": "student",
    "pack_model": "packed_linear",
    "pack_weight": "pack",
    "save_packed_student": "packed_linear",
    "save_student": "student",
    "unpack_weight": "pack",
}
__all__ = [
    "BitLinear",
    "PackedBitLinear",
    "PackedWeight",
    "TernaryConfig",
    "TernaryError",
    "convert",
    "limit_bits",
    "load_packed_student",
    "load_student",
    "pack_model",
    "pack_weight",
    "save_packed_student",
    "save_student",
    "unpack_weight",
]

if TYPE_CHECKING:
    from distill.ternary.bitlinear import BitLinear
    from distill.ternary.config import TernaryConfig, TernaryError
    from distill.ternary.pack import PackedWeight, limit_bits, pack_weight, unpack_weight
    from distill.ternary.packed_linear import (
        PackedBitLinear,
        load_packed_student,
        pack_model,
        save_packed_student,
    )
    from distill.ternary.student import convert, load_student, save_student


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"distill.ternary.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


_register()
