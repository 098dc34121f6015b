"""What converting a dense model to ternary costs, where it hurts, and what a student can still learn.

Four tables, on the run's logged scored states and the dense model that run
deployed (the teacher of `benchmarks/retention.py`). Tables 1 to 3 use a fixed
batch of `--states` states; table 4 uses every state of the run.

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
   blocks trainable, as retention.py trains it; 0: every block, as the loop
   preset runs/frozenlake-ternary.toml trains it) takes one step of the
   forward KL over the candidates on the batch. Printed: the trained layers'
   codes that changed, and the KL on the same batch before and after (a step
   that helps lowers it).
3. **Where it hurts.** The teacher with only a part of it converted to
   `--pattern` (the rest stays dense): 8-bit activations alone, one kind of
   projection in every block, or every projection of a range of blocks. If
   the damage sat in a few layers, keeping those dense would be a cheap
   mixed-precision student; the table says whether it does.
4. **What the trunk keeps.** Training only the top N blocks (retention.py's
   `--train-layers`) can recover no more than what the frozen ternary bottom
   still passes up. A linear probe (multinomial logistic regression, its L2
   weight chosen on a held-out fifth of the states, its accuracy read on
   another fifth) predicts the teacher's move from the last prompt token's
   hidden state after k blocks, for the teacher and the untrained student,
   against the share of the most frequent move.

README, "Sparse-ternary students", reads them.

    python benchmarks/ternary_conversion.py --db oel.db --run frozenlake-quick
    python benchmarks/ternary_conversion.py --tables first-step --train-layers 0 --lrs 1e-6 3e-6 1e-5
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TABLES = ("conversion", "first-step", "damage", "trunk")


@dataclass
class Batch:
    """A fixed batch of logged scored states and what the teacher answers on it."""

    teacher_path: str
    prompts: list[list[int]]
    candidates: list[list[list[int]]]
    pad: int
    ids: Any
    mask: Any
    target: list[Any]
    """Per state, the teacher's log pi over its candidate moves."""
    target_tokens: Any
    """The teacher's log softmax over the vocabulary at every prompt token."""

    def move_kls(self, model: Any) -> tuple[list[Any], list[Any]]:
        """Per state KL(teacher || model) over the candidates, and the model's log pi."""
        from distill.candidates import candidate_log_pi, exact_kl

        log_pi = candidate_log_pi(model, self.prompts, self.candidates, [1.0] * len(self.prompts), self.pad)
        return [exact_kl(t, s) for t, s in zip(self.target, log_pi, strict=True)], log_pi

    def row(self, model: Any) -> list[str]:
        """KL over the moves, same move as the teacher, full-vocabulary KL per prompt token (no gradient)."""
        import torch

        with torch.no_grad():
            kls, log_pi = self.move_kls(model)
            tokens = token_log_probs(model, self.ids, self.mask)
        same = sum(int(t.argmax()) == int(s.argmax()) for t, s in zip(self.target, log_pi, strict=True))
        token_kl = (self.target_tokens.exp() * (self.target_tokens - tokens)).sum(-1).mean()
        return [f"{float(torch.stack(kls).mean()):.3f}", f"{same}/{len(kls)}", f"{float(token_kl):.2f}"]


def token_log_probs(model: Any, ids: Any, mask: Any) -> Any:
    import torch.nn.functional as F

    return F.log_softmax(model(input_ids=ids, attention_mask=mask).logits[mask].float(), dim=-1)


def make_batch(teacher_path: str, teacher: Any, pad: int, states: list[Any]) -> Batch:
    import torch

    from distill.candidates import candidate_log_pi

    prompts = [s.prompt_ids for s in states]
    candidates = [s.candidate_ids for s in states]
    ids = torch.full((len(prompts), max(map(len, prompts))), pad)
    mask = torch.zeros(ids.shape, dtype=torch.bool)
    for i, prompt in enumerate(prompts):
        ids[i, : len(prompt)] = torch.tensor(prompt)
        mask[i, : len(prompt)] = True
    with torch.no_grad():
        target = candidate_log_pi(teacher, prompts, candidates, [1.0] * len(prompts), pad)
        target_tokens = token_log_probs(teacher, ids, mask)
    return Batch(teacher_path, prompts, candidates, pad, ids, mask, target, target_tokens)


def conversion_table(batch: Batch, patterns: list[str]) -> Any:
    from rich.table import Table

    from distill.students import load_student

    table = Table(
        title=f"1. {batch.teacher_path} converted to ternary, untrained, on {len(batch.prompts)} logged "
        f"states ({int(batch.mask.sum()):,} prompt tokens)"
    )
    for column in ("pattern", "scale", "KL over the moves", "same move", "KL per token, full vocabulary"):
        table.add_column(column, justify="right")
    for pattern in patterns:
        for scale in ("tensor", "row"):
            student, _ = load_student(batch.teacher_path, "ternary", pattern, scale, "cpu")
            table.add_row(pattern, scale, *batch.row(student))
    return table


def first_step_table(batch: Batch, pattern: str, lrs: list[float], train_layers: int) -> Any:
    import torch
    from rich.table import Table

    from distill.students import load_student, train_top_layers
    from distill.ternary.bitlinear import BitLinear
    from distill.ternary.quant import quantize_weight

    table = Table(
        title=f"2. One AdamW step of a fresh {pattern} student (per-tensor scale), forward KL over the "
        f"moves, top {train_layers or 'all'} blocks trained"
    )
    for column in ("lr", "codes changed", "share", "KL before", "KL after", "after / before", "s"):
        table.add_column(column, justify="right")
    for lr in lrs:
        started = time.perf_counter()
        student, _ = load_student(batch.teacher_path, "ternary", pattern, "tensor", "cpu")
        if train_layers:
            train_top_layers(student, train_layers)
        layers = [m for m in student.modules() if isinstance(m, BitLinear) and m.weight.requires_grad]
        before_codes = [quantize_weight(m.weight, m.config)[0] for m in layers]
        params = [p for p in student.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        loss = torch.stack(batch.move_kls(student)[0]).mean()
        loss.backward()
        before = float(loss.detach())
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        with torch.no_grad():
            after = float(torch.stack(batch.move_kls(student)[0]).mean())
        changed = sum(
            int((quantize_weight(m.weight, m.config)[0] != c).sum())
            for m, c in zip(layers, before_codes, strict=True)
        )  # fmt: skip
        total = sum(c.numel() for c in before_codes)
        table.add_row(
            f"{lr:g}", f"{changed:,}", f"{changed / total:.4%}", f"{before:.3f}", f"{after:.3f}",
            f"{after / before:.2f}x", f"{time.perf_counter() - started:.0f}",
        )  # fmt: skip
    return table


def partly_converted(teacher_path: str, pattern: str | None, chosen: Any) -> tuple[Any, float]:
    """The teacher with the linears `chosen(name)` picks made BitLinear (8-bit activations on every linear
    when `pattern` is None, weights left dense); and the share of the linear weights converted."""
    import torch
    from torch import nn

    from agent.model import load_model
    from distill.ternary.bitlinear import BitLinear
    from distill.ternary.config import TernaryConfig
    from distill.ternary.quant import fake_quant_activations

    model, _ = load_model(teacher_path, dtype=torch.float32)
    head = model.get_output_embeddings()
    named = [(n, m) for n, m in model.named_modules() if type(m) is nn.Linear and m is not head]
    total = sum(m.weight.numel() for _, m in named)
    if pattern is None:
        for _, linear in named:
            linear.register_forward_pre_hook(lambda _m, args: (fake_quant_activations(args[0], 8),))
        return model, 0.0
    converted = 0
    for name, linear in named:
        if chosen(name):
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent), attr, BitLinear.from_linear(linear, TernaryConfig(pattern)))
            converted += linear.weight.numel()
    return model, converted / total


def damage_table(batch: Batch, pattern: str, n_blocks: int) -> Any:
    from rich.table import Table

    table = Table(title=f"3. The teacher with one part converted to {pattern} (the rest dense), untrained")
    for column in ("converted", "linear weights", "KL over the moves", "same move", "KL per token"):
        table.add_column(column, justify="right")
    kinds = [("q_proj", "k_proj"), ("v_proj", "o_proj"), ("gate_proj", "up_proj"), ("down_proj",)]
    edges = [0, 1, 2, 4, 8, n_blocks // 2, 3 * n_blocks // 4, n_blocks]
    parts: list[tuple[str, str | None, Any]] = [("8-bit activations alone", None, None)]
    parts += [
        (" and ".join(kind) + ", every block", pattern, lambda n, kind=kind: n.rsplit(".", 1)[-1] in kind)
        for kind in kinds
    ]
    parts += [
        (f"blocks {lo}-{hi - 1}" if hi - lo > 1 else f"block {lo}", pattern,
         lambda n, lo=lo, hi=hi: lo <= int(n.split(".layers.")[1].split(".")[0]) < hi)
        for lo, hi in zip(edges, edges[1:], strict=False) if hi > lo
    ]  # fmt: skip
    for label, part_pattern, chosen in parts:
        model, share = partly_converted(batch.teacher_path, part_pattern, chosen)
        table.add_row(label, f"{share:.0%}", *batch.row(model))
    return table


def linear_probe_accuracy(x: Any, y: Any, seed: int = 0) -> float:
    """Held-out accuracy of logistic regression on (x, y): fit on 3/5, L2 picked on 1/5, read on 1/5."""
    import torch

    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    fit, pick = int(0.6 * len(y)), int(0.8 * len(y))
    x = (x - x[:fit].mean(0)) / (x[:fit].std(0) + 1e-6)
    classes = int(y.max()) + 1
    best = (-1.0, None)
    for l2 in (1e-3, 1e-2, 1e-1):
        probe = torch.nn.Linear(x.shape[1], classes)
        optimizer = torch.optim.LBFGS(probe.parameters(), max_iter=200)

        def closure(probe=probe, optimizer=optimizer, l2=l2) -> Any:
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(probe(x[:fit]), y[:fit]) + l2 * probe.weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        with torch.no_grad():
            picked = float((probe(x[fit:pick]).argmax(1) == y[fit:pick]).float().mean())
            if picked > best[0]:
                best = (picked, float((probe(x[pick:]).argmax(1) == y[pick:]).float().mean()))
    return best[1]


def trunk_table(
    teacher_path: str, teacher: Any, pad: int, states: list[Any], pattern: str, depths: list[int]
) -> Any:
    import torch
    from rich.table import Table

    from distill.candidates import candidate_log_pi
    from distill.students import load_student

    with torch.no_grad():
        chunks = [states[i : i + 32] for i in range(0, len(states), 32)]
        moves = [
            int(log_pi.argmax())
            for chunk in chunks
            for log_pi in candidate_log_pi(teacher, [s.prompt_ids for s in chunk],
                                           [s.candidate_ids for s in chunk], [1.0] * len(chunk), pad)
        ]  # fmt: skip
    y = torch.tensor(moves)
    held_out = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))][int(0.8 * len(y)) :]
    majority = float((held_out == torch.bincount(y).argmax()).float().mean())
    student, _ = load_student(teacher_path, "ternary", pattern, "tensor", "cpu")
    table = Table(
        title=f"4. A linear probe of the teacher's move from the hidden state after k blocks, {len(states)} "
        f"states (the most frequent move: {majority:.0%} of the probe's held-out fifth)"
    )
    for column in ("after k blocks", "teacher", f"{pattern} student, untrained"):
        table.add_column(column, justify="right")
    hidden: dict[str, list[Any]] = {"teacher": [], "student": []}
    with torch.no_grad():
        for state in states:
            ids = torch.tensor([state.prompt_ids])
            for key, model in (("teacher", teacher), ("student", student)):
                layers = model(input_ids=ids, output_hidden_states=True).hidden_states
                hidden[key].append(torch.stack([layers[k][0, -1] for k in depths]))
    teacher_x, student_x = torch.stack(hidden["teacher"]), torch.stack(hidden["student"])
    for i, k in enumerate(depths):
        table.add_row(
            str(k), f"{linear_probe_accuracy(teacher_x[:, i], y):.1%}",
            f"{linear_probe_accuracy(student_x[:, i], y):.1%}",
        )  # fmt: skip
    return table


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", default="sqlite:///oel.db", help="the store holding the run (URL or path)")
    parser.add_argument("--run", default="frozenlake-quick", help="the run whose logged states are used")
    parser.add_argument("--teacher", help="dense checkpoint folder (default: the run's deployed checkpoint)")
    parser.add_argument(
        "--tables", nargs="+", choices=TABLES, default=list(TABLES), help="which tables to print"
    )
    parser.add_argument("--patterns", nargs="+", default=["none", "6:8", "4:8", "2:4"], help="table 1")
    parser.add_argument("--pattern", default="2:4", help="tables 2 to 4: N:M pattern of the student")
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-6, 1e-5, 2e-5, 5e-5, 1e-4, 3e-4])
    parser.add_argument("--states", type=int, default=32, help="logged scored states in the fixed batch")
    parser.add_argument("--train-layers", type=int, default=4, help="table 2: trained top blocks; 0: all")
    parser.add_argument("--depths", type=int, nargs="+", help="table 4: k (default: 0, 8 and the trunk "
                        "under the top --train-layers blocks)")  # fmt: skip
    args = parser.parse_args()
    if args.states < 1:
        parser.error("--states must be at least 1")
    url = args.db if "://" in args.db else f"sqlite:///{Path(args.db).resolve()}"

    import torch
    from rich.console import Console

    from agent.model import load_model
    from distill.data import scored_pool
    from memory import queries
    from memory.store import ExperienceStore

    torch.manual_seed(0)
    with ExperienceStore.open(url) as store:
        run_id = store.get_run(args.run)
        if run_id is None:
            raise SystemExit(f"error: there is no run {args.run!r} in {url}; run the quick preset first")
        teacher_path = args.teacher or store.deployed_checkpoint(run_id)[1]
        last_round = int(queries.rounds(store, run_id)["round"].max())
        states = scored_pool(store, args.run, last_round, "train", replay=-1)
    teacher, tokenizer = load_model(teacher_path, dtype=torch.float32)
    teacher.requires_grad_(False)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    n_blocks = len(teacher.base_model.layers)
    console = Console(width=160)
    if {"conversion", "first-step", "damage"} & set(args.tables):
        batch = make_batch(teacher_path, teacher, pad, states[: args.states])
    if "conversion" in args.tables:
        console.print(conversion_table(batch, args.patterns))
    if "first-step" in args.tables:
        console.print(first_step_table(batch, args.pattern, args.lrs, args.train_layers))
    if "damage" in args.tables:
        console.print(damage_table(batch, args.pattern, n_blocks))
    if "trunk" in args.tables:
        depths = args.depths or sorted({0, min(8, n_blocks), n_blocks - (args.train_layers or n_blocks)})
        if not all(0 <= k <= n_blocks for k in depths):
            parser.error(f"--depths must lie between 0 and {n_blocks}")
        console.print(trunk_table(teacher_path, teacher, pad, states, args.pattern, depths))


if __name__ == "__main__":
    main()
