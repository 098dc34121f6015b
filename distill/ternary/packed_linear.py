"""Deployment of a sparse-ternary student: PackedBitLinear, pack_model, and packed checkpoints.

`pack_model` freezes a trained student: every BitLinear becomes a
PackedBitLinear that keeps only the 2-bit kernel layout and the float32 scales,
and runs through the C++ kernel (`kernel.py`). The module is a drop-in for
`nn.Linear` in inference, so the packed model still goes through the ordinary
transformers `generate`. The kernel computes in float32 whatever the input
dtype and casts the result back to it. A prefill of GEMM_ROWS tokens or more
goes through one GEMM instead (`kernel.int8_matmul`), with the same numbers;
its codes are unpacked then and kept as that GEMM's operand, so a model that
has prefilled holds 8 bits per weight in memory beside the 2-bit layout, or 32
on a CPU where the fp32 form of the GEMM is the faster (the file stays at its
1.3-1.6 bits). Layers that read the same input (q, k and v; gate
and up) share that GEMM (`SiblingGemm`): one quantization of the input, one
wider multiply.

A packed checkpoint is a folder with the HF `config.json` (and the generation
config), and `packed.safetensors`: the group-coded ternary matrices (`pack.py`)
plus every remaining tensor (embeddings, norms, an untied lm_head) in full
precision. Tied tensors are written once and re-tied on load.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch
from torch import nn

from distill.ternary.bitlinear import BitLinear
from distill.ternary.config import PACKED_FILE, TernaryError
from distill.ternary.kernel import (
    gemm_operand,
    int8_matmul,
    kernel_layout,
    load_kernel,
    ternary_matmul,
    unpack_layout,
)
from distill.ternary.pack import PackedWeight, load_packed, pack_weight, save_packed, unpack_weight
from distill.ternary.quant import quantize_weight
from distill.ternary.student import student_config

GEMM_ROWS = 64
"""From this many rows (tokens) on, a layer multiplies through `int8_matmul` instead of the kernel: on 2
AVX2 cores the int8 GEMM measured 1.7-4.4x the kernel at 64-2048 rows of SmolLM2's shapes, slower below
(on a CPU where torch's int8 GEMM is slow, its fp32 form; README, "Sparse-ternary students")."""


class PackedBitLinear(nn.Module):
    """Inference-only ternary linear layer on packed 2-bit weights and the CPU kernel."""

    def __init__(
        self, codes: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None, pattern: str
    ) -> None:
        super().__init__()
        self.out_features, self.in_features = codes.shape
        self.pattern = pattern
        self.register_buffer("packed", kernel_layout(codes))
        self.register_buffer("scale", scale.float().reshape(-1).clone())
        self.register_buffer("row_scale", self.scale.expand(self.out_features).contiguous(), persistent=False)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self._kernel = None
        self._gemm_codes: torch.Tensor | None = None
        """The codes as the prefill GEMM's operand (`gemm_operand`: one byte per weight, or four where the
        fp32 GEMM is the faster), unpacked at the first prefill (`int8_matmul`)."""
        self._siblings: tuple[SiblingGemm, int] | None = None
        """The group of layers reading the same input that this one's prefill is multiplied with, and
        this layer's place in it (`fuse_siblings`)."""

    @classmethod
    def from_bitlinear(cls, layer: BitLinear) -> PackedBitLinear:
        """Freeze a trained BitLinear: quantize and mask its latent weight once, then pack it."""
        if layer.config.act_bits != 8:
            raise TernaryError(
                f"the packed kernel needs 8-bit activations, the layer uses {layer.config.act_bits}"
            )
        codes, scale = quantize_weight(layer.weight, layer.config)
        return cls(codes, scale, layer.bias, layer.config.pattern)

    def codes(self) -> torch.Tensor:
        """The int8 ternary codes (out, in) this layer multiplies by."""
        return unpack_layout(self.packed, self.in_features)

    def to_packed_weight(self) -> PackedWeight:
        """The storage form of this layer's weight (`pack.py`)."""
        return pack_weight(self.codes(), self.scale, self.pattern)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # At batch 1 Python overhead rivals the matvec, so the kernel is looked up once per layer and
        # the buffers are read from `_buffers` directly (nn.Module.__getattr__ costs ~0.5 us each).
        buffers = self._buffers
        if x.numel() >= GEMM_ROWS * self.in_features and self._siblings is not None:
            group, index = self._siblings  # prefill: one GEMM shared with the sibling layers
            y = group.output(index, x)
        elif x.numel() >= GEMM_ROWS * self.in_features:  # prefill: one GEMM, the same numbers
            if self._gemm_codes is None:
                self._gemm_codes = gemm_operand(self.codes())
            y = int8_matmul(x, self._gemm_codes, buffers["row_scale"])
        else:
            if self._kernel is None:
                fallback = functools.partial(ternary_matmul, in_features=self.in_features)
                self._kernel = load_kernel() or fallback
            y = self._kernel(x, buffers["packed"], buffers["row_scale"])
        bias = buffers["bias"]
        return y if bias is None else y + bias.to(y.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, pattern={self.pattern}"


class SiblingGemm:
    """Layers that read the same input (attention's q, k, v; the MLP's gate and up) in one GEMM.

    transformers calls them one after the other on the very same tensor. The
    first call of a prefill quantizes that input once and multiplies it by all
    the layers' codes side by side; the others take their columns of the
    result. Each column is the same integer dot product and the same scaling
    as in the layer's own GEMM, so the numbers do not change; what goes is two
    of three activation quantizations and the small GEMMs' poorer blocking.
    A call that is not the expected sibling's (another input, an input changed
    in place, or a layer called twice) computes the whole group again, so a
    layer used alone stays correct, only slower.
    """

    def __init__(self, layers: list[PackedBitLinear]) -> None:
        self.layers = layers
        self.widths = [layer.out_features for layer in layers]
        self.codes_t: torch.Tensor | None = None
        self.wscale = torch.cat([layer.row_scale for layer in layers])
        self._input: tuple[torch.Tensor, int] | None = None
        self._outputs: list[torch.Tensor] = []
        self._pending: set[int] = set()

    def output(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Layer `index`'s output for `x` before its bias, computed with its siblings'."""
        version = _version(x)
        fresh = self._input is not None and self._input[0] is x and self._input[1] == version
        if not (fresh and index in self._pending):
            if self.codes_t is None:
                self.codes_t = gemm_operand(torch.cat([layer.codes() for layer in self.layers]))
            y = int8_matmul(x, self.codes_t, self.wscale)
            self._input, self._pending = (x, version), set(range(len(self.layers)))
            self._outputs = list(torch.split(y, self.widths, dim=-1))
        self._pending.discard(index)
        out = self._outputs[index]
        if not self._pending:  # the last sibling: let the input and the outputs go
            self._input, self._outputs = None, []
        return out


def _version(x: torch.Tensor) -> int:
    """x's in-place version counter; inference tensors keep none (-1), and only the identity check is left."""
    return -1 if x.is_inference() else x._version


SIBLINGS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))
"""Names of the linear layers a Llama-family block calls on one shared input."""


def fuse_siblings(model: nn.Module) -> int:
    """Group the packed layers that share an input (SIBLINGS) into SiblingGemms; return how many groups."""
    groups = 0
    for parent in model.modules():
        for names in SIBLINGS:
            layers = [getattr(parent, name, None) for name in names]
            if not all(isinstance(layer, PackedBitLinear) for layer in layers):
                continue
            if len({layer.in_features for layer in layers}) != 1:
                continue
            group = SiblingGemm(layers)
            for index, layer in enumerate(layers):
                layer._siblings = (group, index)
            groups += 1
    return groups


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def pack_model(student: nn.Module) -> nn.Module:
    """Replace every BitLinear of a converted student with a PackedBitLinear, in place; returns it."""
    student_config(student)
    layers = [(name, m) for name, m in student.named_modules() if isinstance(m, BitLinear)]
    if not layers:
        raise TernaryError("the student holds no BitLinear layers to pack")
    with torch.no_grad():
        for name, layer in layers:
            _replace(student, name, PackedBitLinear.from_bitlinear(layer))
    fuse_siblings(student)
    return student.eval()


def save_packed_student(model: nn.Module, path: str | Path) -> float:
    """Write a packed model (after `pack_model`) to a folder; returns its ternary layers' bits per weight."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    packed_names = [name for name, m in model.named_modules() if isinstance(m, PackedBitLinear)]
    if not packed_names:
        raise TernaryError("the model holds no PackedBitLinear layers; call pack_model(student) first")
    packed = {name: model.get_submodule(name).to_packed_weight() for name in packed_names}
    others, aliases, seen = {}, {}, {}
    for key, tensor in model.state_dict().items():
        owner = key.rpartition(".")[0]
        if owner in packed:
            if key.endswith(".bias"):
                others[key] = tensor
            continue
        ident = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if ident in seen:
            aliases[key] = seen[ident]
        else:
            seen[ident] = key
            others[key] = tensor
    config = student_config(model)
    save_packed(
        path / PACKED_FILE,
        packed,
        others,
        header={"ternary": json.loads(config.to_json()), "aliases": aliases},
    )
    model.config.save_pretrained(path)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(path)
    total = sum(p.shape[0] * p.shape[1] for p in packed.values())
    return sum(p.bits_per_weight * p.shape[0] * p.shape[1] for p in packed.values()) / total


def load_packed_student(path: str | Path, dtype: torch.dtype = torch.float32) -> nn.Module:
    """Rebuild a packed model saved by `save_packed_student`, ready for `generate`."""
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    from distill.ternary.config import TernaryConfig

    path = Path(path)
    if not (path / PACKED_FILE).is_file():
        raise TernaryError(f"{path} holds no {PACKED_FILE}; it is not a packed ternary student")
    packed, others, header = load_packed(path / PACKED_FILE)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path), dtype=dtype)
    for name, weight in packed.items():
        codes, scale = unpack_weight(weight)
        _replace(model, name, PackedBitLinear(codes, scale, others.pop(f"{name}.bias", None), weight.pattern))
    missing, unexpected = model.load_state_dict(others, strict=False)
    missing = [key for key in missing if key.rpartition(".")[0] not in packed]
    aliases = header.get("aliases", {})
    if unexpected or set(missing) != set(aliases):
        raise TernaryError(
            f"{path} does not fit its config: missing {sorted(set(missing) - set(aliases))}, "
            f"unexpected {sorted(unexpected)}"
        )
    state = model.state_dict()
    for key, target in aliases.items():
        if state[key].data_ptr() != state[target].data_ptr():
            raise TernaryError(
                f"{key} was saved as an alias of {target}, but the rebuilt model does not tie them"
            )
    if (path / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(path)
    model.ternary_config = TernaryConfig.from_dict(header["ternary"])
    fuse_siblings(model)
    return model.eval()
