"""Turn a dense Llama-family HF model into a sparse-ternary student, and save/load one.

`convert` swaps every `nn.Linear` except the output head for a `BitLinear`
that shares the dense parameters, so the student starts exactly from the
pretrained weights. It works in place by default (the common case is "load
the dense checkpoint, convert, train"); pass `inplace=False` to get a deep copy
and keep the dense model as the teacher. Embeddings are not linear layers and
the lm_head is skipped (it is often tied to the embeddings), so both stay in
full precision as BitNet prescribes. Exact ties at the N:M mask's boundary
are opened on the way in (`BitLinear.from_linear`), so that the mask the
student starts with is not broken up by its first optimizer step.

A training-time student is saved as a normal HF folder (safetensors, latent
full-precision weights, same keys as the dense model) plus `ternary.json`
holding the `TernaryConfig`. Loading rebuilds the dense model and converts it
again; no pickle is involved.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from torch import nn

from distill.ternary.bitlinear import BitLinear
from distill.ternary.config import TernaryConfig, TernaryError

CONFIG_FILE = "ternary.json"


def convert(
    model: nn.Module,
    pattern: str = "2:4",
    *,
    per_row_scale: bool = False,
    act_bits: int = 8,
    inplace: bool = True,
) -> nn.Module:
    """Replace the attention and MLP linears of `model` with BitLinear layers; return the student."""
    config = TernaryConfig(pattern=pattern, per_row_scale=per_row_scale, act_bits=act_bits)
    if any(isinstance(m, BitLinear) for m in model.modules()):
        raise TernaryError("model already holds BitLinear layers; convert a dense model")
    student = model if inplace else copy.deepcopy(model)
    head = student.get_output_embeddings() if hasattr(student, "get_output_embeddings") else None
    targets = [
        (parent, name, child)
        for parent in student.modules()
        for name, child in parent.named_children()
        if type(child) is nn.Linear and child is not head
    ]
    if not targets:
        raise TernaryError(f"{type(model).__name__} has no nn.Linear layers to convert")
    for parent, name, child in targets:
        setattr(parent, name, BitLinear.from_linear(child, config))
    student.ternary_config = config
    return student


def student_config(model: nn.Module) -> TernaryConfig:
    """The TernaryConfig a student was converted with."""
    config = getattr(model, "ternary_config", None)
    if not isinstance(config, TernaryConfig):
        raise TernaryError(f"{type(model).__name__} is not a ternary student; run convert() first")
    return config


def save_student(model: nn.Module, path: str | Path) -> Path:
    """Save a training-time student: HF safetensors folder with latent weights plus ternary.json."""
    config = student_config(model)
    path = Path(path)
    model.save_pretrained(path, safe_serialization=True)
    (path / CONFIG_FILE).write_text(config.to_json() + "\n")
    return path


def load_student(path: str | Path, **from_pretrained_kwargs) -> nn.Module:
    """Load a student saved by `save_student` (keyword arguments go to `from_pretrained`)."""
    from transformers import AutoModelForCausalLM

    path = Path(path)
    config_file = path / CONFIG_FILE
    if not config_file.is_file():
        raise TernaryError(f"{path} holds no {CONFIG_FILE}; it is not a saved ternary student")
    try:
        config = TernaryConfig.from_dict(json.loads(config_file.read_text()))
    except json.JSONDecodeError as err:
        raise TernaryError(f"{config_file} is not valid JSON: {err}") from err
    model = AutoModelForCausalLM.from_pretrained(path, **from_pretrained_kwargs)
    return convert(model, config.pattern, per_row_scale=config.per_row_scale, act_bits=config.act_bits)
