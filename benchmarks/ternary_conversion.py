"""What converting a dense model to ternary costs, and how large a first step its student survives.

Two tables, both on a fixed batch of the run's logged scored states and the
dense model that run deployed (the teacher of `benchmarks/retention.py`):

1. **Conversion.** For each N:M pattern and weight scale (per tensor, per
   row), the student is the teacher converted as it is (BitLinear: ternary
   weights, 8-bit activations, the mask), untrained. Printed: the exact
   KL(teacher || student) over each state's candidate moves, how often the two
   pick the same move, and the full-vocabulary KL per prompt token (how much
   of the language model is left; log(vocabulary) = 10.8 nats is what a
   uniform guess scores against a sharp teacher).
2. **First step.** A ternary weight moves only when its latent value crosses a
   rounding threshold, and then by a whole quantization step (about mean|W|),
   in the direction the straight-through gradient pointed. AdamW's first step
   moves every latent weight by about `lr` whatever its gradient's size, so
   the share of codes that flip together, and how far the student's decisions
   jump, grow with `lr` in a way the STE's linear picture does not predict.
   For each learning rate, a fresh `--pattern` student (top `--train-layers`
   blocks trainable, as retention.py trains it) takes one step of the forward
   KL over the candidates on the batch. Printed: the trained layers' codes
   that changed, and the KL on the same batch before and after (a step that
   helps lowers it).

README, "Sparse-ternary students", reads both.

    python benchmarks/ternary_conversion.py --db oel.db --run frozenlake-quick
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", default="sqlite:///oel.db", help="the store holding the run (URL or path)")
    parser.add_argument("--run", default="frozenlake-quick", help="the run whose logged states are used")
    parser.add_argument("--teacher", help="dense checkpoint folder (default: the run's deployed checkpoint)")
    parser.add_argument("--patterns", nargs="+", default=["none", "6:8", "4:8", "2:4"], help="table 1")
    parser.add_argument("--pattern", default="2:4", help="table 2: N:M pattern of the student")
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-6, 1e-5, 2e-5, 5e-5, 1e-4, 3e-4])
    parser.add_argument("--states", type=int, default=32, help="logged scored states in the fixed batch")
    parser.add_argument("--train-layers", type=int, default=4, help="table 2: trained top blocks; 0: all")
    args = parser.parse_args()
    url = args.db if "://" in args.db else f"sqlite:///{Path(args.db).resolve()}"

    import torch
    import torch.nn.functional as F
    from rich.console import Console
    from rich.table import Table

    from agent.model import load_model
    from distill.candidates import candidate_log_pi, exact_kl
    from distill.data import scored_pool
    from distill.students import load_student, train_top_layers
    from distill.ternary.bitlinear import BitLinear
    from distill.ternary.quant import quantize_weight
    from memory import queries
    from memory.store import ExperienceStore

    torch.manual_seed(0)
    with ExperienceStore.open(url) as store:
        run_id = store.get_run(args.run)
        if run_id is None:
            raise SystemExit(f"error: there is no run {args.run!r} in {url}; run the quick preset first")
        teacher_path = args.teacher or store.deployed_checkpoint(run_id)[1]
        last_round = int(queries.rounds(store, run_id)["round"].max())
        states = scored_pool(store, args.run, last_round, "train", replay=-1)[: args.states]
    teacher, tokenizer = load_model(teacher_path, dtype=torch.float32)
    teacher.requires_grad_(False)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prompts = [s.prompt_ids for s in states]
    candidates = [s.candidate_ids for s in states]
    ones = [1.0] * len(states)
    ids = torch.full((len(prompts), max(map(len, prompts))), pad)
    mask = torch.zeros(ids.shape, dtype=torch.bool)
    for i, prompt in enumerate(prompts):
        ids[i, : len(prompt)] = torch.tensor(prompt)
        mask[i, : len(prompt)] = True

    def token_log_probs(model: torch.nn.Module) -> torch.Tensor:
        return F.log_softmax(model(input_ids=ids, attention_mask=mask).logits[mask].float(), dim=-1)

    with torch.no_grad():
        target = candidate_log_pi(teacher, prompts, candidates, ones, pad)
        target_tokens = token_log_probs(teacher)

    def per_state_kl(student: torch.nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        log_pi = candidate_log_pi(student, prompts, candidates, ones, pad)
        return [exact_kl(t, s) for t, s in zip(target, log_pi, strict=True)], log_pi

    console = Console(width=160)
    conversion = Table(
        title=f"{teacher_path} converted to ternary, untrained, on {len(states)} logged states "
        f"({int(mask.sum()):,} prompt tokens)"
    )
    for column in ("pattern", "scale", "KL over the moves", "same move", "KL per token, full vocabulary"):
        conversion.add_column(column, justify="right")
    for pattern in args.patterns:
        for scale in ("tensor", "row"):
            student, _ = load_student(teacher_path, "ternary", pattern, scale, "cpu")
            with torch.no_grad():
                kls, log_pi = per_state_kl(student)
                tokens = token_log_probs(student)
            same = sum(int(t.argmax()) == int(s.argmax()) for t, s in zip(target, log_pi, strict=True))
            token_kl = (target_tokens.exp() * (target_tokens - tokens)).sum(-1).mean()
            conversion.add_row(
                pattern, scale, f"{float(torch.stack(kls).mean()):.3f}", f"{same}/{len(states)}",
                f"{float(token_kl):.2f}",
            )  # fmt: skip
    console.print(conversion)

    first_step = Table(
        title=f"One AdamW step of a fresh {args.pattern} student (per-tensor scale), forward KL over the "
        f"moves, top {args.train_layers or 'all'} blocks trained"
    )
    for column in ("lr", "codes changed", "share", "KL before", "KL after", "after / before", "s"):
        first_step.add_column(column, justify="right")
    for lr in args.lrs:
        started = time.perf_counter()
        student, _ = load_student(teacher_path, "ternary", args.pattern, "tensor", "cpu")
        if args.train_layers:
            train_top_layers(student, args.train_layers)
        layers = [m for m in student.modules() if isinstance(m, BitLinear) and m.weight.requires_grad]
        before_codes = [quantize_weight(m.weight, m.config)[0] for m in layers]
        params = [p for p in student.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        loss = torch.stack(per_state_kl(student)[0]).mean()
        loss.backward()
        before = float(loss.detach())
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        with torch.no_grad():
            after = float(torch.stack(per_state_kl(student)[0]).mean())
        changed = sum(
            int((quantize_weight(m.weight, m.config)[0] != c).sum())
            for m, c in zip(layers, before_codes, strict=True)
        )  # fmt: skip
        total = sum(c.numel() for c in before_codes)
        first_step.add_row(
            f"{lr:g}", f"{changed:,}", f"{changed / total:.4%}", f"{before:.3f}", f"{after:.3f}",
            f"{after / before:.2f}x", f"{time.perf_counter() - started:.0f}",
        )  # fmt: skip
    console.print(first_step)


if __name__ == "__main__":
    main()
