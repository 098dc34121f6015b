"""The packed CPU kernel and PackedBitLinear: exact against the integer reference, and generation."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest
import torch
from tiny_models import tiny_llama

from distill.ternary import (
    BitLinear,
    PackedBitLinear,
    TernaryConfig,
    convert,
    load_packed_student,
    pack_model,
    save_packed_student,
)
from distill.ternary import kernel as kernel_module
from distill.ternary.kernel import kernel_layout, reference_matmul, ternary_matmul, unpack_layout
from distill.ternary.packed_linear import GEMM_ROWS

torch.set_num_threads(1)
SHAPES = [(1, 1), (3, 7), (5, 129), (192, 576), (576, 576), (33, 1536), (7, 1000)]


@pytest.fixture(scope="module")
def kernel():
    """The compiled kernel (built on first use: a few seconds to a minute on a busy 2-core machine)."""
    op = kernel_module.load_kernel()
    assert op is not None, "the C++ kernel failed to build on this machine"
    return op


def random_codes(rows: int, cols: int, seed: int) -> torch.Tensor:
    return torch.randint(-1, 2, (rows, cols), generator=torch.Generator().manual_seed(seed), dtype=torch.int8)


@pytest.mark.parametrize("shape", SHAPES)
def test_kernel_layout_round_trip(shape):
    codes = random_codes(*shape, seed=1)
    layout = kernel_layout(codes)
    assert layout.dtype == torch.uint8 and layout.shape == (shape[0], -(-shape[1] // 128) * 32)
    assert torch.equal(unpack_layout(layout, shape[1]), codes)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("batch", [1, 2, 5, 9])
def test_kernel_matches_integer_reference_exactly(kernel, shape, batch):
    out_f, in_f = shape
    codes = random_codes(out_f, in_f, seed=out_f + in_f + batch)
    wscale = torch.rand(out_f) * 3 + 0.1
    x = torch.randn(batch, in_f) * torch.logspace(-3, 3, batch)[:, None]
    y = kernel(x, kernel_layout(codes), wscale)
    # the reference: int64 dot products of the 8-bit activations and the codes, then one float32 scaling
    xq, sx = kernel_module.quantize_activations(x, 8)
    acc = (xq.long() @ codes.long().T).float()
    assert torch.equal(y, acc / (sx * wscale))
    assert torch.equal(y, reference_matmul(x, codes, wscale))


def test_kernel_handles_zero_and_extreme_tokens(kernel):
    codes = random_codes(16, 300, seed=3)
    x = torch.stack([torch.zeros(300), torch.full((300,), 1e30), torch.full((300,), -1e-30)])
    x[1, 7] = -3e30
    y = kernel(x, kernel_layout(codes), torch.ones(16))
    assert torch.equal(y, reference_matmul(x, codes, torch.ones(16)))
    assert torch.equal(y[0], torch.zeros(16))


def test_kernel_rejects_mismatched_inputs(kernel):
    layout = kernel_layout(random_codes(4, 256, seed=0))
    with pytest.raises(RuntimeError, match="does not fit"):
        kernel(torch.randn(1, 100), layout, torch.ones(4))
    with pytest.raises(RuntimeError, match="floating-point"):
        kernel(torch.ones(1, 256, dtype=torch.long), layout, torch.ones(4))
    with pytest.raises(RuntimeError, match="one entry per output row"):
        kernel(torch.randn(1, 256), layout, torch.ones(3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_kernel_keeps_leading_dims_and_dtype(kernel, dtype):
    codes, wscale = random_codes(24, 200, seed=2), torch.rand(24) + 0.5
    x = torch.randn(2, 3, 200).to(dtype)
    y = kernel(x, kernel_layout(codes), wscale)
    assert y.shape == (2, 3, 24) and y.dtype == dtype
    assert torch.equal(y, reference_matmul(x, codes, wscale))


def test_torch_fallback_gives_the_same_numbers(kernel, monkeypatch):
    codes, x, wscale = random_codes(40, 200, seed=5), torch.randn(3, 200), torch.rand(40) + 0.5
    expected = kernel(x, kernel_layout(codes), wscale)
    monkeypatch.setattr(kernel_module, "load_kernel", lambda: None)
    assert torch.equal(ternary_matmul(x, kernel_layout(codes), wscale, 200), expected)


def test_failed_build_warns_and_falls_back(tmp_path, monkeypatch):
    bad = tmp_path / "broken.cpp"
    bad.write_text("this is not C++\n")
    monkeypatch.setenv("OEL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(kernel_module, "_SOURCE", bad)
    kernel_module.load_kernel.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="failed to build"):
            assert kernel_module.load_kernel() is None
    finally:
        kernel_module.load_kernel.cache_clear()


@pytest.mark.parametrize("pattern", ["none", "2:4"])
def test_packed_layer_agrees_with_the_training_layer(kernel, pattern):
    torch.manual_seed(0)
    bl = BitLinear(96, 40, bias=True, config=TernaryConfig(pattern=pattern, per_row_scale=pattern == "none"))
    packed = PackedBitLinear.from_bitlinear(bl)
    assert torch.equal(packed.codes().float() / packed.scale[:, None], bl.effective_weight())
    x = torch.randn(2, 3, 96)
    with torch.no_grad():
        assert torch.allclose(packed(x), bl(x), rtol=1e-5, atol=1e-5)
        assert packed(x.bfloat16()).dtype == torch.bfloat16


@pytest.mark.parametrize("rows", [GEMM_ROWS, 3 * GEMM_ROWS + 5])
def test_a_prefill_goes_through_the_int8_gemm_with_the_kernels_numbers(kernel, rows):
    torch.manual_seed(1)
    layer = PackedBitLinear.from_bitlinear(BitLinear(200, 72, bias=True, config=TernaryConfig(pattern="2:4")))
    x = torch.randn(rows, 200) * torch.rand(rows, 1) * 10  # tokens of very different scales
    with torch.no_grad():
        gemm = layer(x[None])[0]
        per_row = torch.cat([layer(x[i : i + 1]) for i in range(rows)])  # one token at a time: the kernel
    assert layer._gemm_codes is not None
    assert torch.equal(gemm, per_row)


def test_packed_tiny_llama_generates_and_survives_save_load(kernel, tmp_path):
    student = convert(tiny_llama(intermediate_size=136), "2:4")
    ids = torch.randint(0, 96, (2, 6))
    with torch.no_grad():
        fake_quant = student(ids).logits
        packed = pack_model(student)
        logits = packed(ids).logits
    assert not any(isinstance(m, BitLinear) for m in packed.modules())
    assert sum(isinstance(m, PackedBitLinear) for m in packed.modules()) == 14
    assert torch.allclose(logits, fake_quant, atol=1e-4)
    bits = save_packed_student(packed, tmp_path / "p")
    assert 1.26 < bits < 1.35
    again = load_packed_student(tmp_path / "p")
    with torch.no_grad():
        assert torch.equal(again(ids).logits, logits)
    out = again.generate(ids, max_new_tokens=5, do_sample=False)
    assert out.shape == (2, 11) and torch.equal(out[:, :6], ids)
    assert torch.equal(out, packed.generate(ids, max_new_tokens=5, do_sample=False))


@pytest.mark.slow
def test_packed_smollm2_generates_text(kernel):
    model_module = pytest.importorskip(
        "agent.model", reason="agent.model (the default model) is not there yet"
    )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = model_module.default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = pack_model(convert(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), "2:4"))
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 8
    assert isinstance(tokenizer.decode(out[0, ids.shape[1] :]), str)


@pytest.mark.parametrize("rows, out_features, in_features", [(210, 72, 200), (5, 13, 577), (64, 1, 3)])
def test_the_gemm_forms_and_cpp_ends_all_give_the_kernels_numbers(
    kernel, monkeypatch, rows, out_features, in_features
):
    torch.manual_seed(2)
    codes, wscale = random_codes(out_features, in_features, seed=3), torch.rand(out_features) + 0.1
    x = (torch.randn(rows, in_features) * torch.rand(rows, 1) * 10).reshape(rows, 1, in_features)
    want = kernel(x, kernel_layout(codes), wscale)
    results = []
    for form, dtype in zip(kernel_module.GEMMS, (torch.uint8, torch.int8, torch.float32), strict=True):
        monkeypatch.setattr(kernel_module, "fastest_gemm", lambda form=form: form)
        operand = kernel_module.gemm_operand(codes)
        assert operand.dtype == dtype
        results.append(kernel_module.int8_matmul(x, operand, wscale))  # C++ quantization and scaling
        if form != "kernel":
            assert operand.shape == (in_features, out_features)
            with monkeypatch.context() as m:
                m.setattr(kernel_module, "load_kernel", lambda: None)
                results.append(kernel_module.int8_matmul(x, operand, wscale))  # the same as torch ops
    assert all(torch.equal(y, want) for y in results)


def test_the_fastest_gemm_is_one_of_the_forms_and_the_cpp_gemm_refuses_a_layout_of_other_shapes(kernel):
    assert kernel_module.fastest_gemm() in kernel_module.GEMMS
    layout = kernel_module.gemm_layout(random_codes(16, 64, seed=1))
    assert layout.shape == (2, 16, 32)
    with pytest.raises(RuntimeError, match="do not fit in_features 60"):
        torch.ops.oel_ternary.ternary_gemm(torch.randn(4, 60), layout, torch.ones(16))


def test_the_cpp_gemms_int16_sums_do_not_overflow_at_the_worst_case(kernel, monkeypatch):
    # Every product at its largest magnitude (code +1, activations all at -127 after quantization) over
    # more inputs than one int16 chunk holds: the AVX2 path must widen its sums in time.
    monkeypatch.setattr(kernel_module, "fastest_gemm", lambda: "kernel")
    codes = torch.ones(16, 4 * 63 * 3 + 8, dtype=torch.int8)
    x, wscale = -torch.ones(70, codes.shape[1]), torch.ones(16)
    y = kernel_module.int8_matmul(x, kernel_module.gemm_operand(codes), wscale)
    assert torch.equal(y, reference_matmul(x, codes, wscale))


_OTHER_BUILD = """
import torch
from distill.ternary import kernel
from distill.ternary.kernel import gemm_layout, kernel_layout, reference_matmul
assert kernel.load_kernel() is not None, "the kernel did not build"
print(kernel.simd_path())
g = torch.Generator().manual_seed(0)
for rows, out_f, in_f in [(5, 13, 577), (70, 24, 760), (1, 8, 4)]:
    codes = torch.randint(-1, 2, (out_f, in_f), dtype=torch.int8, generator=g)
    wscale, x = torch.rand(out_f, generator=g) + 0.5, torch.randn(rows, in_f, generator=g) * 4
    want = reference_matmul(x, codes, wscale)
    assert torch.equal(torch.ops.oel_ternary.ternary_gemm(x, gemm_layout(codes), wscale), want)
    assert torch.equal(torch.ops.oel_ternary.ternary_linear(x, kernel_layout(codes), wscale), want)
worst = torch.ones(16, 4 * 63 * 3 + 8, dtype=torch.int8)
x = -torch.ones(7, worst.shape[1])
assert torch.equal(torch.ops.oel_ternary.ternary_gemm(x, gemm_layout(worst), torch.ones(16)),
                   reference_matmul(x, worst, torch.ones(16)))
"""


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the -march names are x86-64's")
@pytest.mark.parametrize("march, path", [("x86-64-v3", "avx2"), ("x86-64", "scalar")])
def test_the_kernel_built_for_an_older_cpu_gives_the_same_numbers(march, path, tmp_path):
    # The native build takes the newest path this CPU has; AVX2-only and pre-AVX2 CPUs run other code,
    # built here with OEL_TERNARY_MARCH in a process of its own (the op library registers once per process).
    env = {**os.environ, kernel_module.MARCH_VARIABLE: march}
    done = subprocess.run([sys.executable, "-c", _OTHER_BUILD], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [path]


def _unfused(model):
    for m in model.modules():
        if isinstance(m, PackedBitLinear):
            m._siblings = None
    return model


def test_sibling_layers_share_one_gemm_with_the_same_numbers(kernel):
    import copy

    from distill.ternary.packed_linear import fuse_siblings

    packed = pack_model(convert(tiny_llama(intermediate_size=136), "2:4"))
    separate = _unfused(copy.deepcopy(packed))
    assert fuse_siblings(separate) == 2 * len(packed.model.layers)  # q,k,v and gate,up in every block
    separate = _unfused(separate)
    ids = torch.randint(0, 96, (2, 5 * GEMM_ROWS // 8))  # enough tokens for the GEMM path
    x = torch.randn(ids.numel(), packed.config.hidden_size)
    with torch.no_grad():
        for fused, alone in zip(packed.model.layers, separate.model.layers, strict=True):
            for name in ("q_proj", "k_proj", "v_proj"):  # each layer's output: the same numbers
                assert torch.equal(getattr(fused.self_attn, name)(x), getattr(alone.self_attn, name)(x))
            assert torch.equal(fused.mlp(x), alone.mlp(x))
        # attention reads q, k, v as column slices of one output; its kernels may round differently there
        assert torch.allclose(packed(ids).logits, separate(ids).logits, rtol=0, atol=1e-6)
    with torch.inference_mode():  # inference tensors keep no version counter; the rollouts run so
        assert torch.allclose(packed(ids).logits, separate(ids).logits, rtol=0, atol=1e-6)


def test_a_sibling_called_out_of_turn_computes_its_own_columns(kernel):
    packed = pack_model(convert(tiny_llama(intermediate_size=136), "2:4"))
    attention = packed.model.layers[0].self_attn
    x = torch.randn(GEMM_ROWS + 3, attention.q_proj.in_features)
    with torch.no_grad():
        alone = {name: getattr(attention, name)(x) for name in ("k_proj", "k_proj", "v_proj", "q_proj")}
        x.mul_(2)  # changed in place: no stale columns
        doubled = attention.q_proj(x)
        _unfused(packed)
        assert torch.equal(attention.q_proj(x), doubled)
        x.div_(2)
        for name, y in alone.items():
            assert torch.equal(getattr(attention, name)(x), y)
