"""One OPCD update on SmolLM2-135M: tokens/s and peak memory, ours against a naive full-vocabulary version.

Run: `python benchmarks/opcd.py [--batch 8] [--tokens 256] [--prompt 96] [--threads 1] [--repeats 2]`.

What is measured: the scoring-and-update half of an OPCD step on a fixed
batch (batch x tokens response tokens after a prompt; the teacher's prompt is
longer by a knowledge block): student forward, teacher forward, top-k
reverse KL, backward, AdamW step. Sampling is left out on purpose: both
variants sample identically, and 8 x 256 sampled tokens would take minutes
here. Tokens/s counts response tokens.

- ours: `distill.text_batches.response_logits` / `response_hidden` (logits only at
  response positions) and `distill.losses.opcd_token_kl` (student log-probs
  only at its top-k ids; teacher head applied in chunks, top-k gathered).
- naive: `model(...).logits` for every position of both models, full
  `log_softmax` of both over the vocabulary, then slice the response rows,
  take the student's top-k and sum. The same loss value, up to float error.

Each variant runs in its own subprocess (so one's allocations cannot hide in
the other's), does one warm-up step (which also allocates AdamW's moments),
then resets the kernel's peak-RSS mark (`/proc/self/clear_refs`, Linux) and
times `--repeats` steps. Peak memory is the VmHWM rise above the RSS at the
reset: the step's transient memory on top of models and optimizer state. The
child runs with glibc told to mmap every allocation over 64 KiB and to trim
at once (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`), so freed
tensors leave RSS immediately; otherwise memory the warm-up step freed but
glibc kept would be reused invisibly and hide most of the difference. The
machine is shared, so the best of the repeats is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

from distill.losses import opcd_token_kl
from distill.text_batches import pack, response_hidden, response_logits

KNOWLEDGE_TOKENS = 64
"""Extra prompt tokens the teacher sees (the knowledge block)."""


def _status_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+)", text, re.M).group(1))


def _batches(tokenizer, batch: int, tokens: int, prompt: int, pad: int):
    generator = torch.Generator().manual_seed(0)
    vocab = len(tokenizer)
    prompts = torch.randint(0, vocab, (batch, prompt), generator=generator).tolist()
    knowledge = torch.randint(0, vocab, (KNOWLEDGE_TOKENS,), generator=generator).tolist()
    responses = torch.randint(0, vocab, (batch, tokens), generator=generator).tolist()
    student = pack(prompts, responses, pad)
    teacher = pack([knowledge + p for p in prompts], responses, pad)
    return student, teacher


def _ours(student, teacher, s_batch, t_batch, k: int) -> torch.Tensor:
    logits = response_logits(student, s_batch)
    with torch.no_grad():
        hidden = response_hidden(teacher, t_batch)
    return opcd_token_kl(logits, hidden, teacher.get_output_embeddings(), 0.7, k).mean()


def _naive(student, teacher, s_batch, t_batch, k: int) -> torch.Tensor:
    log_s = torch.log_softmax(
        student(s_batch.input_ids, attention_mask=s_batch.attention_mask).logits / 0.7, -1
    )
    with torch.no_grad():
        log_t = torch.log_softmax(
            teacher(t_batch.input_ids, attention_mask=t_batch.attention_mask).logits / 0.7, -1
        )
    log_s = log_s[s_batch.rows, s_batch.cols]
    log_t = log_t[t_batch.rows, t_batch.cols]
    ids = log_s.detach().topk(k, -1).indices
    top_s = log_s.gather(-1, ids)
    return (top_s.exp() * (top_s - log_t.gather(-1, ids))).sum(-1).mean()


def child(args: argparse.Namespace) -> dict:
    """Measure one variant in this process; return its figures."""
    from agent.model import default_model_path, load_model

    torch.set_num_threads(args.threads)
    student, tokenizer = load_model(default_model_path())
    teacher, _ = load_model(default_model_path())
    teacher.requires_grad_(False)
    student.train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-5)
    s_batch, t_batch = _batches(tokenizer, args.batch, args.tokens, args.prompt, tokenizer.pad_token_id or 0)
    loss_fn = _ours if args.variant == "ours" else _naive

    def step() -> float:
        loss = loss_fn(student, teacher, s_batch, t_batch, args.topk)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        return float(loss.detach())

    first_loss = step()  # warm-up; allocates AdamW's moments
    Path("/proc/self/clear_refs").write_text("5")
    base = _status_kib("VmRSS")
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = _status_kib("VmHWM") - base
    tokens = args.batch * args.tokens
    return {"variant": args.variant, "loss": first_loss, "seconds": min(times), "tok_s": tokens / min(times),
            "peak_mib": peak / 1024, "steady_mib": base / 1024}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=256, help="response tokens per row")
    parser.add_argument("--prompt", type=int, default=96, help="student prompt tokens per row")
    parser.add_argument("--topk", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--variant", choices=["ours", "naive"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(child(args)))
        return
    rows = {}
    for variant in ("ours", "naive"):
        cmd = [sys.executable, __file__, "--variant", variant, *sys.argv[1:]]
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        rows[variant] = json.loads(out.strip().splitlines()[-1])
    ours, naive = rows["ours"], rows["naive"]
    print(
        f"OPCD update, SmolLM2-135M fp32, batch {args.batch} x {args.tokens} response tokens "
        f"(+{args.prompt} prompt, teacher +{KNOWLEDGE_TOKENS}), top-k {args.topk}, {args.threads} thread(s)"
    )
    print(f"{'variant':<8} {'loss':>10} {'s/step':>8} {'tok/s':>8} {'step peak MiB':>14} {'steady MiB':>11}")
    for r in (ours, naive):
        figures = f"{r['loss']:>10.5f} {r['seconds']:>8.2f} {r['tok_s']:>8.1f} {r['peak_mib']:>14.0f}"
        figures += f" {r['steady_mib']:>11.0f}"
        print(f"{r['variant']:<8} {figures}")
    speed, memory = ours["tok_s"] / naive["tok_s"], ours["peak_mib"] / naive["peak_mib"]
    print(f"ours / naive: tokens/s x{speed:.2f}, peak memory x{memory:.2f}")


if __name__ == "__main__":
    main()
