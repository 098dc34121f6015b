"""How much of what a dense model learned its sparse-ternary student keeps: the retention table and curve.

The teacher is a dense checkpoint that learned something (by default the one
the quick preset's run deployed last, `oel loop --config
runs/frozenlake-quick.toml`). For each N:M pattern asked for, a student starts
from the teacher's own weights converted to BitLinear (ternary weights, 8-bit
activations, the N:M mask) and is distilled from it on its own states, in
`--rounds` on-policy rounds (DAgger's loop, Ross et al. 2011; GKD's on-policy
distillation, Agarwal et al. 2024):

1. the packed student plays `--maps` new train maps greedily, as it would be
   deployed, and its episodes are logged in the store (a run of its own);
2. scored OPCD without knowledge (`oel consolidate --method opcd --action-mode
   scored --student ternary --teacher T --no-teacher-knowledge --replay -1`)
   trains it for `--steps` steps on every state it visited so far, labelled
   by the teacher: the exact forward KL(teacher || student) between the two
   candidate distributions (or, with `--divergence reverse`, OPCD's reverse
   KL), with the job's validation gate on the 36 val maps every
   `--eval-every` steps (the curve) and the best-validated weights kept.

Why on its own states: the teacher's logged states are the ones a good player
visits; a freshly ternarized student plays other moves, into states the
teacher never logged, and training on the teacher's states alone left it at
0/108 (README, "Sparse-ternary students"). By default only the top
`--train-layers` blocks train, on the student's own frozen ternary bottom
blocks, whose outputs are computed once per state (the trunk cache); 0 trains
every block. Then the packed student and its dense teacher play the 108 test
maps of FrozenLake 4x4 (3 holes, the neighbour line) greedily, which training
and validation never show.

Printed: per student, bits per weight, the test pass rate over distinct maps
with its 95% Wilson interval, step accuracy, retention (student / teacher
pass rate), scored episodes per second on those maps, the CPU minutes the
rounds took (play and distillation); the teacher's gap over the untrained
student as the first round's job measured it on val; and the val curve (pass
rate and step accuracy against steps), so a user can see what more CPU buys.
Floors and the ceiling on the same test maps are in benchmarks/learning.py
(solver 100%, best blind sequence 17.6%, random over {down, right} 14.8%).

    python benchmarks/retention.py --db oel.db --run frozenlake-quick     # 2:4 and 6:8, 3 rounds each
    python benchmarks/retention.py --teacher checkpoints/x/round-1 --patterns 2:4 --rounds 4 --steps 30
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

ENV = "oel/FrozenLake-4x4-v0"
SEEN = {"neighbours": True}


def untrained_student(teacher: str, pattern: str, out: Path) -> Path:
    """The teacher converted to an N:M ternary student, untrained, saved packed (what round 0 plays)."""
    from distill.students import load_student
    from distill.ternary.deploy import save_consolidated

    model, tokenizer = load_student(teacher, "ternary", pattern, "tensor", "cpu")
    save_consolidated(model, tokenizer, out)
    return out


def play_train_maps(store, run: str, round_index: int, student: str, maps: int) -> int:
    """The packed `student` plays `maps` new train maps greedily, logged as round `round_index` of `run`
    (the states the next distillation trains on); returns how many it won."""
    from agent.hf_policy import HFPolicy
    from agent.policy import SamplingParams
    from agent.rollout import EpisodeTags, RolloutConfig, run_rollouts

    run_id = store.ensure_run(run)
    round_id = store.start_round(run_id, round_index)
    tags = EpisodeTags(run_id, round_id, store.checkpoint_for_path(student, run_id=run_id))
    greedy = SamplingParams(temperature=0.0)
    config = RolloutConfig(env_id=ENV, split="train", episodes=maps, batch=32, seed=round_index * maps,
                           env_kwargs=SEEN, sampling=greedy, action_mode="scored")  # fmt: skip
    summary = run_rollouts(HFPolicy(student, device="cpu"), store, config, tags=tags)
    return sum(e.won for e in summary.episodes)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--db", default="sqlite:///oel.db", help="the store holding the run (a URL or a path)"
    )
    parser.add_argument(
        "--run", default="frozenlake-quick", help="the run whose deployed checkpoint is the default teacher"
    )
    parser.add_argument("--teacher", help="dense checkpoint folder (default: the run's deployed checkpoint)")
    parser.add_argument("--patterns", nargs="+", default=["2:4", "6:8"], help="N:M patterns of the students")
    parser.add_argument("--rounds", type=int, default=3, help="on-policy rounds per student (play, distil)")
    parser.add_argument("--maps", type=int, default=64, help="new train maps the student plays each round")
    parser.add_argument("--steps", type=int, default=20, help="distillation steps per round")
    parser.add_argument(
        "--eval-every", type=int, default=10, help="val gate every this many steps (the curve)"
    )
    parser.add_argument("--batch", type=int, default=32, help="logged scored states per step")
    parser.add_argument(
        "--lr", type=float, default=1e-5,
        help="AdamW learning rate of the latent weights (one step at 2e-5 already raised the KL; "
        "benchmarks/ternary_conversion.py)",
    )  # fmt: skip
    parser.add_argument(
        "--divergence", choices=["reverse", "forward"], default="forward",
        help="KL(teacher || student), or OPCD's KL(student || teacher)",
    )  # fmt: skip
    parser.add_argument(
        "--train-layers", type=int, default=4,
        help="train the top N blocks on the frozen ternary bottom (trunk cache); 0: every block",
    )  # fmt: skip
    args = parser.parse_args()
    for name in ("rounds", "maps", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    url = args.db if "://" in args.db else f"sqlite:///{Path(args.db).resolve()}"

    import envs  # noqa: F401
    from agent.hf_policy import HFPolicy
    from agent.policy import SamplingParams
    from distill.consolidation import consolidate
    from memory import queries
    from memory.stats import format_task_rate
    from memory.store import ExperienceStore
    from oel.evaluation import EvalConfig, evaluate

    tmp = Path(tempfile.mkdtemp(prefix="oel-retention-"))
    rows: list[tuple[str, ...]] = []
    curves: dict[str, list[tuple[int, float, float | None]]] = {}
    gaps: dict[str, dict] = {}
    with ExperienceStore.open(url) as store:
        run_id = store.get_run(args.run)
        if run_id is None:
            raise SystemExit(f"error: there is no run {args.run!r} in {url}; run the quick preset first")
        teacher = args.teacher or store.deployed_checkpoint(run_id)[1]
        bench = store.ensure_run(f"retention-{int(time.time())}")  # a fresh run: every model plays, timed

        def test_figures(label: str, path: str) -> tuple[dict, float]:
            print(f"{label}: greedy on the test maps", flush=True)
            policy = HFPolicy(path, device="cpu")
            config = EvalConfig(env_id=ENV, env_kwargs=SEEN, episodes=108, batch=36, action_mode="scored",
                                sampling=SamplingParams(temperature=0.0))  # fmt: skip
            started = time.perf_counter()
            figures = evaluate(lambda: policy, store, config, run_id=bench,
                               checkpoint_id=store.checkpoint_for_path(path, run_id=bench))  # fmt: skip
            return figures, figures["episodes"] / (time.perf_counter() - started)

        def row(label: str, figures: dict, bits: str, retention: str, speed: float, cpu: str = "-") -> None:
            f = figures
            rate = format_task_rate(f["task_score"], f["tasks"], f["wins"], f["episodes"], "maps")
            accuracy = "-" if figures.get("step_accuracy") is None else f"{figures['step_accuracy']:.2f}"
            rows.append((label, bits, rate, accuracy, retention, f"{speed:.2f}", cpu))

        dense, dense_speed = test_figures("dense teacher", teacher)
        row(f"dense teacher ({Path(teacher).name})", dense, "32 (fp32)", "1.00", dense_speed)
        for pattern in args.patterns:
            tag = pattern.replace(":", "of")
            collect_run = f"retention-{int(time.time())}-{tag}"
            student_path = str(untrained_student(teacher, pattern, tmp / f"ternary-{tag}-0"))
            what = f"{args.rounds} rounds of {args.maps} train maps played, {args.steps} steps each"
            print(f"{pattern} student: {what} of scored OPCD ({args.divergence} KL) from the dense teacher",
                  flush=True)  # fmt: skip
            cpu = time.process_time()
            curve: list[tuple[int, float, float | None]] = []
            for r in range(args.rounds):
                won = play_train_maps(store, collect_run, r, student_path, args.maps)
                print(f"  round {r}: the student won {won}/{args.maps} train maps it played", flush=True)
                values = dict(
                    run=collect_run, round=r, method="opcd", action_mode="scored", student="ternary",
                    pattern=pattern, model=student_path, teacher=teacher, teacher_knowledge=False,
                    steps=args.steps, batch=args.batch, lr=args.lr, divergence=args.divergence,
                    temperature=1.0, replay=-1, carry_optimizer=True, eval_every=args.eval_every,
                    eval_episodes=36, train_layers=args.train_layers or None, keep_best=True,
                    require_gap=False, eval_env=ENV, eval_env_kwargs=SEEN, save_every=args.steps,
                    out=str(tmp / f"ternary-{tag}-{r + 1}"),
                )  # fmt: skip
                result = consolidate(
                    values, store, on_step=lambda m: print(f"    step {m['step']}: kl {m['kl']:.4f}")
                )
                student_path = str(result.out)
                info = store.checkpoint_info(result.checkpoint_id)
                gap = info["meta"]["teacher_gap"]
                if r == 0:
                    gaps[pattern] = gap
                    curve.append((0, gap["student"][0], gap["student"][1]))
                mine = queries.loss_curves(store, store.get_run(collect_run))
                mine = mine[mine["consolidation"] == result.consolidation_id]
                curve += [
                    (r * args.steps + int(s), m["val_pass_rate"], m.get("val_step_acc"))
                    for s, m in zip(mine["step"], mine["metrics"], strict=True)
                    if "val_pass_rate" in m
                ]
            cpu_min = (time.process_time() - cpu) / 60
            curves[pattern] = curve
            student, speed = test_figures(f"{pattern} student", student_path)
            retained = student["task_score"] / dense["task_score"] if dense["task_score"] else float("nan")
            label = f"{pattern} ternary student, {args.rounds} x ({args.maps} maps, {args.steps} steps)"
            row(label, student, f"{info['bits_per_weight']:.2f}", f"{retained:.2f}", speed, f"{cpu_min:.1f}")

    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    table = Table(
        title=f"Retention on the 108 test maps of {ENV} (neighbour line), greedy, scored; 95% CI over maps"
    )
    columns = ("model", "bits/weight", "test pass rate [95% CI]", "step acc", "retention", "episodes/s",
               "distil CPU min")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "model" else "right")
    for cells in rows:
        table.add_row(*cells)
    console.print(table)
    for pattern, gap in gaps.items():
        (t_rate, t_acc), (s_rate, s_acc) = gap["teacher"], gap["student"]
        console.print(
            f"{pattern}: the gap on {gap['tasks']} val maps before training: teacher {t_rate:.1%} (step acc "
            f"{t_acc:.2f}), untrained student {s_rate:.1%} (step acc {s_acc:.2f})"
        )
    curve_table = Table(title="val curve (36 val maps): pass rate / step accuracy after each gate")
    curve_table.add_column("student")
    steps = sorted({s for c in curves.values() for s, _r, _a in c})
    for s in steps:
        curve_table.add_column(f"step {s}", justify="right")
    for pattern, points in curves.items():
        at = {s: f"{r:.1%} / {'-' if a is None else f'{a:.2f}'}" for s, r, a in points}
        curve_table.add_row(pattern, *(at.get(s, "") for s in steps))
    console.print(curve_table)
    print(f"students in {tmp}")


if __name__ == "__main__":
    main()
