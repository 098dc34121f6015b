"""A consolidated sparse-ternary student on disk, and loading it wherever a model path is accepted.

`oel consolidate --student ternary` writes its output folder so:

    out/                    the checkpoint registered in the store (fmt "ternary-packed", its bits/weight)
      config.json, generation_config.json, tokenizer files
      packed.safetensors    ternary layers group-coded, embeddings/norms in full precision (`pack.py`)
      latent/               the trainable student: an HF folder with the latent fp32 weights,
                            ternary.json and the tokenizer (`save_student`)
      job.json, resume-*/   the job record and its snapshots while it runs (`distill.checkpointing`)

Why so: the store's checkpoint path is what the next round deploys (`oel
play --model`, `oel eval`, the loop), so it must be the packed model the
kernel runs, and the bits per weight in the row must be that folder's. But a
packed model cannot be trained further: the latent weights that rank the N:M
mask and let pruned weights come back are gone. So the latent student rides
along in `latent/`, inside the same folder so that the pair is copied or
deleted together and the store needs one path; a consolidation started from
the packed folder continues from `latent/` (`trainable_start`).

Loading: `register()` (run when `distill.ternary` is imported, which the `oel`
command does) tells `agent.model.load_model` to load any folder holding
`packed.safetensors` with `load_packed_model`, so the `hf` backend, `oel eval`
and a consolidation teacher get the packed model running the C++ kernel, while
`agent` never imports `distill`. Nothing here imports torch at import time, so
`oel --help` stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from distill.ternary.config import PACKED_FILE, TernaryError

FMT = "ternary-packed"
"""The `fmt` of a packed student's checkpoint row."""
LATENT_DIR = "latent"
"""Sub-folder of a consolidated packed student that holds its trainable latent weights."""
LATENT_MARKER = "ternary.json"
"""The file `save_student` writes next to the latent weights."""


def is_packed(folder: str | os.PathLike[str]) -> bool:
    """Whether `folder` holds a packed ternary student."""
    return (Path(folder) / PACKED_FILE).is_file()


def load_packed_model(folder: Path, dtype: Any, device: str) -> Any:
    """The `agent.model` loader for packed folders: the model on PackedBitLinear layers (CPU kernel)."""
    if not str(device).startswith("cpu"):
        raise TernaryError(f"{folder} is a packed ternary student; its kernel runs on the CPU, not {device}")
    from distill.ternary.packed_linear import load_packed_student

    return load_packed_student(folder, dtype=dtype)


def trainable_start(path: str | os.PathLike[str], student: str) -> Path:
    """The folder a consolidation loads its student from, given the start checkpoint `path`.

    A dense or latent folder is itself; a packed student continues from its
    `latent/` weights (and must be trained as a ternary student).
    """
    path = Path(path)
    if not is_packed(path):
        return path
    if student != "ternary":
        raise TernaryError(
            f"{path} is a packed ternary student; continue it with --student ternary, or start a dense "
            "student from a dense checkpoint"
        )
    latent = path / LATENT_DIR
    if not (latent / LATENT_MARKER).is_file():
        raise TernaryError(
            f"{path} is a packed ternary student without {LATENT_DIR}/ (its latent weights); a packed model "
            "can be deployed but not trained further"
        )
    return latent


def save_consolidated(student: Any, tokenizer: Any, out: str | os.PathLike[str]) -> float:
    """Write `out/latent/` and the packed `out/` (see the module docstring); return the bits per weight.

    The student is packed in place (its BitLinear layers become PackedBitLinear),
    so this is the last thing a job does with it.
    """
    from distill.ternary.packed_linear import pack_model, save_packed_student
    from distill.ternary.student import save_student

    out = Path(out)
    save_student(student, out / LATENT_DIR)
    tokenizer.save_pretrained(str(out / LATENT_DIR))
    bits = save_packed_student(pack_model(student), out)
    tokenizer.save_pretrained(str(out))
    return bits


def register() -> None:
    """Make `agent.model.load_model` load packed student folders (idempotent)."""
    from agent.model import register_loader

    register_loader(PACKED_FILE, load_packed_model)
