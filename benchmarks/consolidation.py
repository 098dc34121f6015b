"""Consolidation methods compared on the same round, the same budget and the same held-out maps.

Run a loop first (e.g. `oel loop --config runs/frozenlake-quick.toml`), then:

    python benchmarks/consolidation.py --db sqlite:///oel.db --run frozenlake-quick --round 0

The loop's round already holds three of the rows (its own phase results):
the student before consolidation (M_r alone), the teacher (M_r with the
round's knowledge in context) and the OPCD student (M_r+1 alone). This
script adds the baselines of the OPCD issue on exactly the OPCD job's
settings (steps, batch, lr, lengths, seed, knowledge version, start model):
off-policy context distillation and SFT on the round's won episodes, each
evaluated on the same held-out seeds. It works on a copy of the SQLite store,
so the run's own store is never touched. Tokens per episode are generated
tokens; prompt tokens show what knowledge in context costs.
"""

from __future__ import annotations

import argparse
import dataclasses
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this folder comes first on sys.path and its sibling
# benchmarks/envs.py would shadow the `envs` package; drop the folder.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import select  # noqa: E402

from agent.evaluate import EvalConfig, evaluate  # noqa: E402
from agent.policy import SamplingParams, make_policy  # noqa: E402
from distill.errors import ConsolidationError  # noqa: E402
from distill.opcd import ConsolidateConfig, consolidate  # noqa: E402
from memory.db import parse_url  # noqa: E402
from memory.models import Checkpoint, Consolidation, Round, Run  # noqa: E402
from memory.store import ExperienceStore  # noqa: E402


def copy_store(url: str, folder: Path) -> str:
    """A private copy of a SQLite store (the backup API copies a WAL database consistently)."""
    source = parse_url(url)
    if source.get_backend_name() != "sqlite" or not source.database:
        raise SystemExit("this benchmark copies the store and needs a SQLite file URL")
    target = folder / "copy.db"
    with sqlite3.connect(source.database) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return f"sqlite:///{target}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", default="sqlite:///oel.db", help="the loop's store (SQLite)")
    parser.add_argument("--run", default="frozenlake-quick")
    parser.add_argument("--round", type=int, default=0)
    parser.add_argument("--methods", nargs="+", default=["offpolicy", "sft"])
    args = parser.parse_args()

    console = Console()
    with tempfile.TemporaryDirectory() as tmp, ExperienceStore.open(copy_store(args.db, Path(tmp))) as store:
        run_id = store.get_run(args.run)
        if run_id is None:
            raise SystemExit(f"no run {args.run!r} in {args.db}")
        with store.engine.connect() as conn:
            round_id = conn.execute(
                select(Round.id).where(Round.run_id == run_id, Round.idx == args.round)
            ).scalar_one()
            hparams = conn.execute(
                select(Consolidation.hparams)
                .where(Consolidation.round_id == round_id, Consolidation.method == "opcd")
                .order_by(Consolidation.id)
                .limit(1)
            ).scalar_one()
            run_config = conn.execute(select(Run.config).where(Run.id == run_id)).scalar_one()
        results = store.phase_results(round_id)
        conditions = results["evaluate"]["conditions"]
        ev, sampling = run_config["evaluate"], SamplingParams(**run_config["sampling"])
        fields = {f.name for f in dataclasses.fields(ConsolidateConfig)}
        # stores written before the paths got their own keys held the start path under "student"
        start = hparams.get("student_path", hparams["student"])
        teacher = hparams.get("teacher_path", hparams["teacher"])
        base = {k: v for k, v in hparams.items() if k in fields and k not in ("student", "teacher")}
        base["student"] = hparams["student"] if "student_path" in hparams else "dense"
        base["model"], base["teacher"] = start, (teacher if teacher != start else None)

        table = Table(title=f"run {args.run}, round {args.round}: {ev['episodes']} held-out maps per row")
        for column in ("model", "pass rate", "tokens/ep", "prompt tok/ep", "consolidation s"):
            table.add_column(column, justify="right")
        labels = {"none": "student before", "knowledge": "teacher (knowledge in context)",
                  "consolidated": "student after OPCD"}  # fmt: skip
        for name, label in labels.items():
            c = conditions[name]
            seconds = results["consolidate"]["seconds"] if name == "consolidated" else None
            table.add_row(
                label, f"{c['pass_rate']:.1%}", f"{c['tokens_per_episode'] or 0:.1f}",
                f"{c['prompt_tokens_per_episode'] or 0:.0f}", "-" if seconds is None else f"{seconds:.0f}",
            )  # fmt: skip
        for method in args.methods:
            job = ConsolidateConfig(**{**base, "method": method, "out": str(Path(tmp) / method)})
            started = time.perf_counter()
            try:
                result = consolidate(job, store)
            except ConsolidationError as exc:
                table.add_row(f"student after {method}", "n/a", "-", "-", f"({exc})"[:60])
                continue
            seconds = time.perf_counter() - started
            stmt = select(Checkpoint.path).where(Checkpoint.id == result.checkpoint_id)
            with store.engine.connect() as conn:
                path = conn.execute(stmt).scalar_one()
            policy = make_policy("hf", path)
            config = EvalConfig(
                env_id=run_config["run"]["env_id"], episodes=ev["episodes"], batch=ev["batch"],
                seed=ev["seed"], sampling=sampling,
            )  # fmt: skip
            outcome = evaluate(policy, store, config, run_id=run_id, checkpoint_id=result.checkpoint_id)
            table.add_row(
                f"student after {method}", f"{outcome.pass_rate:.1%}", f"{outcome.tokens_per_episode:.1f}",
                f"{outcome.prompt_tokens_per_episode or 0:.0f}", f"{seconds:.0f}",
            )  # fmt: skip
        console.print(table)


if __name__ == "__main__":
    main()
