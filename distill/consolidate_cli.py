"""`oel consolidate`: move a round's knowledge into the weights (OPCD, the offpolicy / SFT baselines,
or RL on environment rewards, alone or with OPCD; see `distill.rl`).

A thin layer over `distill.opcd`: flags become a `ConsolidateConfig`, the
job runs with a rich progress bar (loss, KL, tokens/s), and any problem the
user can fix (no such round, no knowledge yet, a damaged checkpoint, a model
folder that will not load) is one `error: ...` line and exit code 1. Running
the same command again after an interruption resumes from the last save.
"""

from __future__ import annotations

import typer

DB_HELP = "Database URL (default: $OEL_DB_URL, else sqlite file oel.db in the working directory)."


def consolidate(
    round: int = typer.Option(..., "--round", help="Round index whose logged states are the prompts."),
    method: str = typer.Option(
        "opcd",
        help="opcd (on-policy, reverse KL), offpolicy (teacher samples, forward KL), sft (wins), "
        "rl (GRPO/GMPO on env rewards), opcd+rl (weighted sum).",
    ),
    steps: int = typer.Option(20, min=1, help="Optimizer steps; each samples a fresh batch."),
    run: str = typer.Option("default", help="Run name the round belongs to."),
    lr: float = typer.Option(2e-5, help="AdamW learning rate (constant)."),
    batch: int = typer.Option(4, min=1, help="Prompts per step, one sampled response each."),
    topk: int = typer.Option(256, min=1, help="k of the top-k KL."),
    temperature: float = typer.Option(0.7, help="Rollout temperature; the KL uses logits / T too."),
    max_new_tokens: int = typer.Option(128, min=1, help="Longest sampled response, in tokens."),
    teacher: str | None = typer.Option(
        None, help="Teacher HF folder with the same vocabulary (default: the student's starting checkpoint)."
    ),
    model: str | None = typer.Option(
        None,
        help="Student start (default: the checkpoint the round was played with, else the embedded model).",
    ),
    knowledge: int | None = typer.Option(
        None, help="Knowledge version id for the teacher's prompt (default: the run's latest)."
    ),
    out: str | None = typer.Option(
        None, help="Output folder (default: checkpoints/<run>/round-<R>-<method>)."
    ),
    save_every: int = typer.Option(10, min=1, help="Save a resumable snapshot every N steps."),
    seed: int = typer.Option(0, help="Seeds the batch order and the sampler."),
    student: str = typer.Option(
        "dense", help="dense, or ternary: train a sparse-ternary student and save it packed for deployment."
    ),
    pattern: str = typer.Option("2:4", help="ternary: N:M weight sparsity: 2:4, 4:8, 6:8 or none."),
    scale: str = typer.Option("tensor", help="ternary: weight scale per tensor or per output row (row)."),
    env_id: str | None = typer.Option(None, help="rl: environment to play (default: the round's)."),
    group_size: int = typer.Option(4, min=2, help="rl: episodes per task (same seed) in a group."),
    groups: int = typer.Option(2, min=1, help="rl: groups (tasks) per step."),
    objective: str = typer.Option("grpo", help="rl: grpo or gmpo."),
    kl_beta: float = typer.Option(0.0, min=0.0, help="rl: weight of the k3 KL to the starting checkpoint."),
    rl_weight: float = typer.Option(0.5, help="opcd+rl: loss = w * RL + (1 - w) * OPCD."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Consolidate knowledge into the weights by on-policy context distillation (or a baseline)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from agent.model import ModelLoadError
    from distill.errors import ConsolidationError
    from distill.opcd import ConsolidateConfig, make_consolidator
    from memory.errors import StoreError
    from memory.store import ExperienceStore

    console = Console()
    try:
        config = ConsolidateConfig(
            round=round, method=method, run=run, steps=steps, batch=batch, lr=lr, topk=topk,
            temperature=temperature, max_new_tokens=max_new_tokens, model=model, teacher=teacher,
            knowledge=knowledge, out=out, save_every=save_every, seed=seed, student=student,
            pattern=pattern, scale=scale, env_id=env_id,
            group_size=group_size, groups=groups, objective=objective, kl_beta=kl_beta, rl_weight=rl_weight,
        )  # fmt: skip
        with ExperienceStore.open(db) as store:
            job = make_consolidator(config, store)
            try:
                with console.status("loading the student and the teacher ..."):
                    job.setup()
                columns = (
                    TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]}"), TextColumn("KL {task.fields[kl]}"),
                    TextColumn("reward {task.fields[reward]}"),
                    TextColumn("{task.fields[tps]} tok/s"), TimeElapsedColumn(),
                )  # fmt: skip
                with Progress(*columns, console=console) as progress:
                    bar = progress.add_task(
                        f"{method} round {round}",
                        total=steps,
                        completed=job.start_step,
                        loss="-",
                        kl="-",
                        reward="-",
                        tps="-",
                    )

                    def on_step(metrics: dict) -> None:
                        kl, reward = metrics.get("kl"), metrics.get("reward_mean")
                        progress.update(
                            bar, advance=1, loss=f"{metrics['loss']:.4f}",
                            kl="-" if kl is None else f"{kl:.4f}",
                            reward="-" if reward is None else f"{reward:.2f}",
                            tps=f"{metrics['tokens'] / max(metrics['seconds'], 1e-9):.1f}",
                        )  # fmt: skip

                    result = job.train(on_step)
            finally:
                job.cleanup()
    except (ConsolidationError, ModelLoadError, StoreError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    resumed = f" (resumed after step {result.start_step})" if result.start_step else ""
    console.print(f"checkpoint {result.checkpoint_id} at {result.out}{resumed}")


def register(root: typer.Typer) -> None:
    """Attach `oel consolidate` to the root command."""
    root.command("consolidate")(consolidate)
