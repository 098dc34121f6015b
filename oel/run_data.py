"""A run's rounds as rows, read from the store alone: the numbers `oel report` plots and `oel ui` shows.

One job, shaping: what the loop recorded per round (phase results, the
round's train episodes, its consolidation's steps and the deployed
checkpoint's validation record) becomes one flat row per round, with a
column per condition and figure (`pass_none`, `low_consolidated`, ...), so
the Markdown report (`oel.report`) and the web viewer (`oel.ui.app`) draw
the same numbers and neither reads the store its own way. Nothing here
plots or formats; `round_results` reads only the phase results, so a page
listing every run can chart each one cheaply.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from memory import queries
from memory.store import ExperienceStore
from oel.conditions import CONDITIONS


def round_rows(store: ExperienceStore, run_id: int) -> pd.DataFrame:
    """One row per round: status, per-condition pass rate and tokens, knowledge, lineage, phase seconds,
    the train episodes' valid-action rate, the RL groups kept, filtered and skipped, and the validation gate
    of the dense consolidation and of the ternary student's (the val curve of its distillation)."""
    rows = round_results(store, run_id)
    for row in rows:
        train = queries.episodes(store, run=run_id, round=row["round"], split="train")
        known = train[train["n_valid_actions"].notna()]
        row["valid_actions"] = (
            float(known["n_valid_actions"].sum()) / float(known["n_steps"].sum())
            if known["n_steps"].sum()
            else None
        )
        row.update(_group_counts(store, run_id, row["round"]))
        for key, checkpoint in (("gate", row["to_checkpoint"]), ("ternary_gate", row["ternary_checkpoint"])):
            meta = store.checkpoint_info(checkpoint)["meta"] if checkpoint else None
            row[key] = gate_summary((meta or {}).get("validation"))
    return pd.DataFrame(rows)


def gate_summary(validation: dict[str, Any] | None) -> str | None:
    """The validation gate of one consolidation: each validated step's pass rate, and the step deployed.

    Step 0 is M_r itself, so "deployed step 0" means the round kept M_r's weights.
    """
    if not validation or not validation.get("history"):
        return None
    rates = ", ".join(f"s{step} {100 * rate:.0f}%" for step, rate in sorted(validation["history"]))
    best = validation.get("best_step")
    return rates if best is None else f"{rates}; deployed step {best}"


def round_results(store: ExperienceStore, run_id: int) -> list[dict[str, Any]]:
    """What the rounds' phases recorded, one dict per round, read from the phase results alone (cheap:
    no episode or step is read, so a page listing every run can draw each one's chart)."""
    rows = []
    for round_id, index, status in queries.rounds(store, run_id)[["id", "round", "status"]].itertuples(
        index=False
    ):
        res = store.phase_results(round_id)
        row: dict[str, Any] = {"round": index, "status": status}
        conditions = res.get("evaluate", {}).get("conditions", {})
        for name in CONDITIONS:
            cond = conditions.get(name, {})
            row[f"pass_{name}"] = cond.get("pass_rate")
            row[f"low_{name}"] = cond.get("ci_low")
            row[f"high_{name}"] = cond.get("ci_high")
            row[f"n_{name}"] = cond.get("episodes")
            row[f"wins_{name}"] = cond.get("wins")
            row[f"tasks_{name}"] = cond.get("tasks")
            row[f"task_score_{name}"] = cond.get("task_score")
            row[f"step_acc_{name}"] = cond.get("step_accuracy")
            row[f"tokens_{name}"] = cond.get("tokens_per_episode")
        row["train_episodes"] = res.get("collect", {}).get("episodes")
        row["train_pass"] = res.get("collect", {}).get("pass_rate")
        row["knowledge_version"] = res.get("extract", {}).get("knowledge_version_id")
        row["knowledge_items"] = res.get("extract", {}).get("items")
        row["knowledge_tokens"] = res.get("extract", {}).get("tokens")
        row["from_checkpoint"] = res.get("collect", {}).get("checkpoint_id")
        row["to_checkpoint"] = res.get("consolidate", {}).get("checkpoint_id")
        row["ternary_checkpoint"] = res.get("consolidate", {}).get("ternary", {}).get("checkpoint_id")
        row["method"] = res.get("consolidate", {}).get("method")
        row["deployed"] = deployed_label(res.get("deploy"))
        for phase in ("collect", "extract", "consolidate", "evaluate"):
            row[f"{phase}_s"] = res.get(phase, {}).get("seconds")
        rows.append(row)
    return rows


def deployed_label(deploy: dict[str, Any] | None) -> str | None:
    """What the round deployed: 'checkpoint 7 (dense)' or 'checkpoint 8 (ternary, 1.27 bits/weight)'."""
    if not deploy:
        return None
    bits = deploy.get("bits_per_weight")
    form = deploy.get("form", "dense") + ("" if bits is None else f", {bits:.2f} bits/weight")
    return f"checkpoint {deploy['checkpoint_id']} ({form})"


def shown_conditions(rows: pd.DataFrame) -> list[str]:
    """The conditions some round of `rows` evaluated, in CONDITIONS order (tables show no empty column)."""
    return [c for c in CONDITIONS if f"pass_{c}" in rows and rows[f"pass_{c}"].notna().any()]


def _group_counts(store: ExperienceStore, run_id: int, round_index: int) -> dict[str, Any]:
    """RL groups of the round's consolidation: kept, filtered by keep_top, skipped (no signal), per step."""
    steps = queries.loss_curves(store, run_id)
    metrics = [m or {} for m in steps.loc[steps["round"] == round_index, "metrics"]]
    metrics = [m for m in metrics if "groups" in m]
    if not metrics:
        return {"rl_steps": None, "kept_groups": None, "filtered_groups": None, "skipped_groups": None}
    return {
        "rl_steps": len(metrics),
        **{
            key: sum(m.get(key, 0) for m in metrics)
            for key in ("kept_groups", "filtered_groups", "skipped_groups")
        },
    }


def loss_curves(store: ExperienceStore, run_id: int) -> pd.DataFrame:
    """Consolidation steps of the run: round, method, step, loss."""
    steps = queries.loss_curves(store, run_id)
    losses = [(metrics or {}).get("loss") for metrics in steps["metrics"]]
    return steps[["round", "method", "step"]].assign(loss=losses)
