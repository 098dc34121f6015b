"""Configuration of a sparse-ternary student, and the one error this package raises.

The whole student is described by a handful of numbers (the N:M pattern, where
the weight scale is taken, how many bits activations get), so it fits in one
small dataclass that is saved as JSON next to the weights and is enough to
rebuild the student from a dense checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

PATTERNS = ("2:4", "4:8", "6:8", "none")
PACKED_FILE = "packed.safetensors"
"""The weights file of a packed student folder; its presence marks the folder as one."""


class TernaryError(ValueError):
    """Bad input to the sparse-ternary code: an unknown pattern, a malformed packed file, a wrong shape."""


@dataclass(frozen=True)
class TernaryConfig:
    """How BitLinear layers quantize and sparsify (BitNet b1.58 with an N:M mask, as Sparse-BitNet)."""

    pattern: str = "2:4"
    """N:M sparsity along the input dimension: "2:4", "4:8", "6:8", or "none" for dense ternary."""
    per_row_scale: bool = False
    """Take the weight scale s = 1/mean|W| per output row instead of once per tensor."""
    act_bits: int = 8
    """Bits of the absmax per-token activation quantizer (8 as in BitNet b1.58; the packed kernel needs 8)."""

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise TernaryError(
                f"unknown sparsity pattern {self.pattern!r}; choose one of {', '.join(PATTERNS)}"
            )
        if not 2 <= self.act_bits <= 8:
            raise TernaryError(f"act_bits must be between 2 and 8, got {self.act_bits}")

    @property
    def n_m(self) -> tuple[int, int] | None:
        """(N, M) of the pattern, or None when the student is dense ternary."""
        if self.pattern == "none":
            return None
        n, m = self.pattern.split(":")
        return int(n), int(m)

    def to_json(self) -> str:
        """Serialise to a JSON object string."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TernaryConfig:
        """Rebuild from a dict read back from JSON; unknown keys are an error, not silently dropped."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise TernaryError(
                f"unknown TernaryConfig fields {sorted(unknown)}; known fields are {sorted(known)}"
            )
        return cls(**data)
