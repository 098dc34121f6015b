"""The two student forms a consolidation trains: dense, or sparse-ternary (BitLinear, deployed packed).

`load_student` turns a start checkpoint into a trainable student of the
chosen form: a dense student is the folder as it is; a ternary student is
the dense (or latent) weights converted to BitLinear layers with an N:M mask
(`distill.ternary.convert`), and a packed ternary start continues from the
latent weights it carries (`distill.ternary.deploy.trainable_start`).
`save_final` writes what gets deployed: an HF folder, or the packed student
with its latent weights beside it, and says which format it wrote and how
many bits a weight takes, for the checkpoint row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from agent.model import load_model
from distill.errors import ConsolidationError
from distill.ternary.config import TernaryError
from distill.ternary.deploy import FMT as PACKED_FMT
from distill.ternary.deploy import save_consolidated, trainable_start
from distill.ternary.student import convert

FORMS = ("dense", "ternary")
SCALES = ("tensor", "row")


def load_student(start: str, form: str, pattern: str, scale: str, device: str) -> tuple[Any, Any]:
    """(model, tokenizer) of a trainable student of `form` (dense or ternary) started from `start`."""
    try:
        folder = trainable_start(start, form)
    except TernaryError as err:
        raise ConsolidationError(str(err)) from None
    model, tokenizer = load_model(folder, dtype=torch.float32, device=device)
    if form == "ternary":
        convert(model, pattern, per_row_scale=scale == "row")
    return model, tokenizer


def save_final(model: Any, tokenizer: Any, out: Path, form: str) -> tuple[str, float | None]:
    """Write the deployable student into `out`; return (checkpoint format, bits per weight or None)."""
    if form == "ternary":
        return PACKED_FMT, save_consolidated(model, tokenizer, out)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return "hf", None


def train_top_layers(model: Any, n: int) -> int:
    """Freeze everything but the last `n` transformer blocks and the final norm; return the trainable count.

    The frozen bottom then runs without keeping activations for backward, so a
    step costs one forward plus the backward of `n` blocks: on a 30-block
    135M model, n = 8 makes a step about twice as fast.
    """
    blocks = getattr(model.base_model, "layers", None)
    if blocks is None or not len(blocks):
        raise ConsolidationError(f"{type(model).__name__} has no base_model.layers; train_layers needs one")
    if not 1 <= n <= len(blocks):
        raise ConsolidationError(f"train_layers must be between 1 and {len(blocks)}, got {n}")
    model.requires_grad_(False)
    for block in blocks[len(blocks) - n :]:
        block.requires_grad_(True)
    norm = getattr(model.base_model, "norm", None)
    if norm is not None:
        norm.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
