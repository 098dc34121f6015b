"""Sparse-ternary students: bits per weight, batch-1 matvec speed, end-to-end decode speed.

Run: `python benchmarks/ternary.py [--threads 1 2] [--new-tokens 32]`. Everything
is measured in this one run, and speeds are printed as ratios against torch
dense fp32 (and bf16) timed in the same run on the same machine.

- Bits per weight: the storage format of `distill/ternary/pack.py` on
  SmolLM2-135M's seven linear shapes (weighted by size), with a per-tensor
  scale, against the entropy limits; plus the kernel's in-memory 2-bit layout.
- Matvec: one token through (576->576), (576->192), (576->1536), (1536->576):
  the raw kernel op against F.linear in fp32 and bf16, and the PackedBitLinear
  module against nn.Linear (fp32), which adds the Python module call to both.
  Each figure is the best of 15 interleaved loops (see `time_us`).
- Decode: greedy `generate` at batch 1 of the dense model (fp32, bf16) and of
  its packed 2:4 student. It uses the real SmolLM2 weights when `agent.model`
  can provide them, else a random-init model with SmolLM2's exact config (same
  shapes, so the same work per token; the text is noise).
- Scored play: greedy scored-mode episodes of FrozenLake 4x4 (3 holes, the
  neighbour line) per second, dense fp32 against its packed 2:4 student, at
  batch 1 and 32, through the real rollout and policy code (`agent.rollout`,
  `HFPolicy` with its prefix cache) into a scratch SQLite store. Scored play
  is prefill, not decode: every step scores the prompt's new tokens and every
  candidate command as branches of one forward, so this is the kernel on
  many-token inputs: measured with every row through the 2-bit kernel; with
  a prefill of GEMM_ROWS rows or more through one int8 GEMM per layer, its
  activation quantization and scaling as torch ops (the path before sibling
  layers shared a GEMM); and as deployed, where q, k, v (and gate, up) share
  one GEMM and the quantization and scaling run in the kernel's C++.
- The pass rate of a ternary student against its dense teacher is a row of
  `benchmarks/learning.py`, which trains it from the best dense model.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from distill.ternary import TernaryConfig, convert, limit_bits, pack_model, pack_weight, packed_linear
from distill.ternary import kernel as kernel_module
from distill.ternary.kernel import BLOCK, kernel_layout, load_kernel, simd_path
from distill.ternary.packed_linear import PackedBitLinear
from distill.ternary.quant import quantize_weight

HIDDEN, INTERMEDIATE, KV = 576, 1536, 192
MATVEC_SHAPES = [(HIDDEN, HIDDEN), (HIDDEN, KV), (HIDDEN, INTERMEDIATE), (INTERMEDIATE, HIDDEN)]
"""(in_features, out_features) of the distinct linear shapes of SmolLM2-135M."""
LAYER_SHAPES = [
    (HIDDEN, HIDDEN),
    (HIDDEN, KV),
    (HIDDEN, KV),
    (HIDDEN, HIDDEN),
    (HIDDEN, INTERMEDIATE),
    (HIDDEN, INTERMEDIATE),
    (INTERMEDIATE, HIDDEN),
]
"""q, k, v, o, gate, up, down of one decoder layer."""


def time_us(calls: dict[str, tuple], rounds: int = 15, seconds: float = 0.01) -> dict[str, float]:
    """Best-of-`rounds` microseconds per call for each name -> (fn, *args), the candidates interleaved.

    The minimum (not the median) and the interleaving are deliberate: this runs
    on shared 2-core machines where other jobs steal the CPU in bursts; the best
    loop estimates the uncontended time, and interleaving exposes every
    candidate to the same bursts.
    """
    loops = {}
    for name, (fn, *args) in calls.items():
        fn(*args)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            fn(*args)
            n += 1
        loops[name] = max(3, n)
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for name, (fn, *args) in calls.items():
            start = time.perf_counter()
            for _ in range(loops[name]):
                fn(*args)
            best[name] = min(best[name], (time.perf_counter() - start) / loops[name] * 1e6)
    return best


def bits_table() -> None:
    print("\n== Bits per weight (SmolLM2-135M linear layers, per-tensor scale) ==")
    print(f"{'format':<34}{'bits/weight':>12}{'limit':>10}")
    print(f"{'dense fp32':<34}{32.0:>12.3f}{'':>10}")
    print(f"{'dense bf16':<34}{16.0:>12.3f}{'':>10}")
    torch.manual_seed(0)
    for pattern, label in (("none", "ternary (base-3 group code)"), ("2:4", "ternary 2:4 (group code)")):
        bits = total = 0
        for in_f, out_f in LAYER_SHAPES:
            codes, scale = quantize_weight(torch.randn(out_f, in_f), TernaryConfig(pattern=pattern))
            bits += pack_weight(codes, scale, pattern).bits_per_weight * in_f * out_f
            total += in_f * out_f
        print(f"{label:<34}{bits / total:>12.3f}{limit_bits(pattern):>10.3f}")
    kernel_bits = sum(2 * -(-i // BLOCK) * BLOCK * o + 32 * o for i, o in LAYER_SHAPES) / sum(
        i * o for i, o in LAYER_SHAPES
    )
    print(f"{'kernel layout in memory (2-bit)':<34}{kernel_bits:>12.3f}{'':>10}")
    print("limits: log2(3) = 1.585 for ternary; log2(33)/4 = 1.261 for ternary with <= 2 nonzeros per 4;")
    print("        the often quoted log2(24)/4 = 1.146 counts only groups with exactly 2 nonzeros, which a")
    print("        lossless code cannot assume (a kept latent weight may round to 0).")


def matvec_table(threads: list[int]) -> None:
    print(f"\n== Batch-1 matvec, microseconds per call (kernel: {simd_path()}) ==")
    print("op level: the kernel op vs F.linear; module level: PackedBitLinear vs nn.Linear (adds Python)")
    print(
        f"{'threads':>7} {'shape':>11} {'kernel':>7} {'F fp32':>7} {'F bf16':>7} {'Packed':>7} {'Linear':>7}"
        f" {'fp32/kern':>10} {'bf16/kern':>10} {'Lin/Packed':>11}"
    )
    kernel = load_kernel()
    for n in threads:
        torch.set_num_threads(n)
        for in_f, out_f in MATVEC_SHAPES:
            torch.manual_seed(0)
            dense = nn.Linear(in_f, out_f, bias=False)
            w, wb = dense.weight.detach(), dense.weight.detach().bfloat16()
            codes, scale = quantize_weight(dense.weight, TernaryConfig(pattern="2:4"))
            packed = PackedBitLinear(codes, scale, None, "2:4")
            layout, row_scale = kernel_layout(codes), scale.expand(out_f).contiguous()
            x = torch.randn(1, in_f)
            calls = {
                "f32": (F.linear, x, w),
                "bf16": (F.linear, x.bfloat16(), wb),
                "packed": (packed, x),
                "linear": (dense, x),
            }
            if kernel is not None:
                calls["kernel"] = (kernel, x, layout, row_scale)
            with torch.inference_mode():
                t = time_us(calls)
            t["kernel"] = t.get("kernel", float("nan"))
            print(
                f"{n:>7} {f'{in_f}->{out_f}':>11} {t['kernel']:>7.1f} {t['f32']:>7.1f} {t['bf16']:>7.1f}"
                f" {t['packed']:>7.1f} {t['linear']:>7.1f} {t['f32'] / t['kernel']:>9.2f}x"
                f" {t['bf16'] / t['kernel']:>9.2f}x {t['linear'] / t['packed']:>10.2f}x"
            )


def load_dense() -> tuple[nn.Module, str]:
    from transformers import LlamaConfig, LlamaForCausalLM

    try:
        from transformers import AutoModelForCausalLM

        from agent.model import default_model_path

        path = default_model_path()
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval(), "SmolLM2-135M (real)"
    except ImportError:
        config = LlamaConfig(
            vocab_size=49152,
            hidden_size=HIDDEN,
            intermediate_size=INTERMEDIATE,
            num_hidden_layers=30,
            num_attention_heads=9,
            num_key_value_heads=3,
            max_position_embeddings=2048,
            tie_word_embeddings=True,
            rope_theta=100000.0,
        )
        torch.manual_seed(0)
        return LlamaForCausalLM(config).eval(), "SmolLM2-135M shapes, random init"


def decode_table(threads: list[int], new_tokens: int) -> None:
    import copy

    dense, label = load_dense()
    dense_bf16 = copy.deepcopy(dense).to(torch.bfloat16)
    packed = pack_model(convert(copy.deepcopy(dense), "2:4"))
    ids = torch.randint(0, dense.config.vocab_size, (1, 16), generator=torch.Generator().manual_seed(0))

    def tokens_per_s(model: nn.Module) -> float:
        kwargs = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False}
        with torch.inference_mode():
            model.generate(ids, **{**kwargs, "max_new_tokens": 4, "min_new_tokens": 4})
            start = time.perf_counter()
            out = model.generate(ids, **kwargs)
        return (out.shape[1] - ids.shape[1]) / (time.perf_counter() - start)

    print(f"\n== Greedy decode, batch 1, {new_tokens} new tokens after 16 ({label}) ==")
    print(
        f"{'threads':>7} {'dense fp32':>11} {'dense bf16':>11} {'packed 2:4':>11} {'packed/fp32':>12} "
        f"{'packed/bf16':>12}"
    )
    for n in threads:
        torch.set_num_threads(n)
        fp32, bf16, tern = tokens_per_s(dense), tokens_per_s(dense_bf16), tokens_per_s(packed)
        print(f"{n:>7} {fp32:>11.1f} {bf16:>11.1f} {tern:>11.1f} {tern / fp32:>11.2f}x {tern / bf16:>11.2f}x")
    print("(tokens/s; the lm_head and embeddings stay dense fp32 in the packed student)")


def scored_table(threads: list[int], batches: list[int], episodes: int) -> None:
    import copy
    import tempfile

    from transformers import AutoTokenizer

    from agent.hf_policy import HFPolicy
    from agent.model import default_model_path
    from agent.policy import SamplingParams
    from agent.rollout import RolloutConfig, run_rollouts
    from memory.store import ExperienceStore

    dense, label = load_dense()
    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()), local_files_only=True)
    packed = pack_model(convert(copy.deepcopy(dense), "2:4"))

    def episodes_per_s(model: nn.Module, batch: int, folder: str) -> tuple[float, float]:
        config = RolloutConfig(
            env_id="oel/FrozenLake-4x4-v0", split="val", episodes=max(episodes, batch), batch=batch,
            env_kwargs={"neighbours": True}, sampling=SamplingParams(temperature=0), action_mode="scored",
        )  # fmt: skip
        with ExperienceStore.open(f"sqlite:///{folder}/oel.db") as store, torch.inference_mode():
            summary = run_rollouts(HFPolicy.from_model(model, tokenizer), store, config)
        return len(summary.episodes) / summary.seconds, summary.prompt_computed / summary.seconds

    def gemm_per_layer(batch: int, folder: str) -> tuple[float, float]:
        """The prefill GEMM of one layer at a time: sibling layers not sharing one GEMM."""
        groups = {m: m._siblings for m in packed.modules() if isinstance(m, PackedBitLinear)}
        for m in groups:
            m._siblings = None
        try:
            return episodes_per_s(packed, batch, folder)
        finally:
            for m, group in groups.items():
                m._siblings = group

    def kernel_only(batch: int, folder: str) -> tuple[float, float]:
        """The packed student with its int8 GEMM prefill path off: every row through the kernel."""
        rows, packed_linear.GEMM_ROWS = packed_linear.GEMM_ROWS, 1 << 62
        try:
            return episodes_per_s(packed, batch, folder)
        finally:
            packed_linear.GEMM_ROWS = rows

    form = kernel_module.fastest_gemm()
    print(f"\n== Scored play, greedy, FrozenLake 4x4 (3 holes, neighbours), {label}; kernel "
          f"{kernel_module.simd_path()}, prefill GEMM: {form} ==")  # fmt: skip
    print(f"{'threads':>7} {'batch':>5} {'dense tok/s':>12} {'kernel tok/s':>13} {'per-layer tok/s':>16} "
          f"{'packed tok/s':>13} {'kernel/dense':>13} {'per-layer/dense':>16} {'packed/dense':>13} "
          f"{'dense ep/s':>11} {'packed ep/s':>12}")  # fmt: skip
    for n in threads:
        torch.set_num_threads(n)
        for batch in batches:
            with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b, \
                    tempfile.TemporaryDirectory() as c, tempfile.TemporaryDirectory() as d:  # fmt: skip
                (d_eps, d_tok), (_k_eps, k_tok), (_l_eps, l_tok), (p_eps, p_tok) = (
                    episodes_per_s(dense, batch, a),
                    kernel_only(batch, c),
                    gemm_per_layer(batch, d),
                    episodes_per_s(packed, batch, b),
                )
            print(f"{n:>7} {batch:>5} {d_tok:>12.0f} {k_tok:>13.0f} {l_tok:>16.0f} {p_tok:>13.0f} "
                  f"{k_tok / d_tok:>12.2f}x {l_tok / d_tok:>15.2f}x {p_tok / d_tok:>12.2f}x {d_eps:>11.2f} "
                  f"{p_eps:>12.2f}")  # fmt: skip
    print(
        "(tok/s: prompt and candidate tokens computed per second, the like-for-like figure; ep/s: episodes\n"
        " per second over the same val maps, which also depends on how long each model's episodes are; the\n"
        " packed student is the dense model converted to 2:4 ternary untrained, so it plays other moves;\n"
        " kernel: every row through the 2-bit kernel; per-layer: prefills of "
        f"{packed_linear.GEMM_ROWS}+ rows through one GEMM per layer\n"
        " (kernel.fastest_gemm's form); packed: as deployed, sibling layers sharing one GEMM)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts to time")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens generated per decode measurement")
    parser.add_argument("--skip-decode", action="store_true", help="skip the end-to-end generate measurement")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32], help="scored-play batch sizes")
    parser.add_argument("--episodes", type=int, default=8, help="scored episodes per measurement (>= batch)")
    parser.add_argument("--only-scored", action="store_true", help="run only the scored-play table")
    args = parser.parse_args()
    print(f"torch {torch.__version__}; no GPU measured (none lent to this run)")
    if not args.only_scored:
        bits_table()
        matvec_table(args.threads)
        if not args.skip_decode:
            decode_table(args.threads, args.new_tokens)
    scored_table(args.threads, args.batches, args.episodes)


if __name__ == "__main__":
    main()
