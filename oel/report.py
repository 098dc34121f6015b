"""`oel report`: a run's evidence as one Markdown file with PNG plots, read from the store alone.

Everything comes from what the loop recorded (phase results, knowledge
versions, consolidation steps, checkpoints), so a report can be written at
any time, by any process, for a run still in progress. Plots:

- pass_rate.png: held-out pass rate per round, with no knowledge, with the
  knowledge in context, and consolidated (OEL's three curves), and the packed
  ternary student where the run distils one (`[ternary]`);
- tokens.png: generated tokens per episode under the same three conditions;
- knowledge.png: knowledge items and rendered tokens per round;
- learning.png: the learning curve (the consolidated pass rate with its
  interval, valid actions while collecting, RL groups per round);
- loss.png: the consolidation loss of every round against its step.

The Markdown holds the same numbers as tables (a column per condition the
run evaluated), what each round deployed (dense or ternary, with its bits
per weight), and the checkpoint lineage.
matplotlib runs on its file-only Agg backend, so no display is needed.

This module only draws and writes; the rows it draws come from
`oel.run_data`, which the web viewer (`oel.ui`) reads too, so both show the
same numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from memory import queries
from memory.stats import format_task_rate
from memory.store import ExperienceStore
from oel.conditions import CONDITIONS, CONSOLIDATED, LABELS, NONE
from oel.run_data import loss_curves, round_rows, shown_conditions


class ReportError(ValueError):
    """The run cannot be reported (unknown, or no round finished a phase yet)."""


def _plot_conditions(
    rows: pd.DataFrame, prefix: str, ylabel: str, title: str, path: Path, percent: bool
) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    scale = 100.0 if percent else 1.0
    top = 0.0
    for name in CONDITIONS:
        values = rows[f"{prefix}_{name}"]
        if values.notna().any():
            scaled = values.astype(float) * scale
            top = max(top, float(scaled.max()))
            line = ax.plot(rows["round"], scaled, marker="o", label=LABELS[name])[0]
            if percent and f"low_{name}" in rows and rows[f"low_{name}"].notna().any():
                low, high = (
                    rows[f"low_{name}"].astype(float) * scale,
                    rows[f"high_{name}"].astype(float) * scale,
                )
                ax.fill_between(rows["round"], low, high, color=line.get_color(), alpha=0.15)
                top = max(top, float(high.max()))
    ax.set_ylim(0, max(10.0 if percent else 1.0, 1.15 * top))  # rates and lengths start at zero
    ax.set_xlabel("round")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_xticks(list(rows["round"]))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_learning(rows: pd.DataFrame, path: Path) -> None:
    """The learning curve: consolidated pass rate and interval, valid-action rate, RL groups per round."""
    import matplotlib.pyplot as plt

    fig, (rate, valid, groups) = plt.subplots(1, 3, figsize=(13, 4))
    best = next((c for c in (CONSOLIDATED, NONE) if rows[f"pass_{c}"].notna().any()), NONE)
    values = rows[f"pass_{best}"].astype(float) * 100
    if values.notna().any():
        low, high = rows[f"low_{best}"].astype(float) * 100, rows[f"high_{best}"].astype(float) * 100
        rate.errorbar(rows["round"], values, yerr=[values - low, high - values], marker="o", capsize=4)
    rate.set_ylim(0, max(10.0, 1.15 * float(rows[f"high_{best}"].astype(float).max() * 100 or 0)))
    rate.set_title(f"held-out pass rate, {LABELS[best]} (95% CI)")
    valid.plot(rows["round"], rows["valid_actions"].astype(float) * 100, marker="o")
    valid.set_ylim(0, 105)
    valid.set_title("valid actions while collecting (%)")
    kinds = ("kept_groups", "filtered_groups", "skipped_groups")
    bottom = pd.Series(0.0, index=rows.index)
    for kind in kinds:
        counts = rows[kind].fillna(0).astype(float)
        groups.bar(rows["round"], counts, bottom=bottom, label=kind.replace("_groups", ""))
        bottom += counts
    groups.set_title("RL groups per round (summed over steps)")
    groups.legend()
    for ax in (rate, valid, groups):
        ax.set_xlabel("round")
        ax.set_xticks(list(rows["round"]))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_knowledge(rows: pd.DataFrame, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(rows["round"], rows["knowledge_tokens"].fillna(0).astype(float), color="tab:blue", alpha=0.6)
    ax.set_xlabel("round")
    ax.set_ylabel("knowledge tokens", color="tab:blue")
    ax.set_xticks(list(rows["round"]))
    twin = ax.twinx()
    twin.plot(rows["round"], rows["knowledge_items"].fillna(0).astype(float), color="tab:red", marker="o")
    twin.set_ylabel("knowledge items", color="tab:red")
    ax.set_title("knowledge size per round")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_losses(losses: pd.DataFrame, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for (round_index, method), group in losses.groupby(["round", "method"], sort=True):
        ax.plot(
            group["step"], group["loss"].astype(float), marker=".", label=f"round {round_index} ({method})"
        )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title("consolidation loss")
    ax.grid(alpha=0.3)
    if not losses.empty:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def condition_cell(row: Any, name: str) -> str:
    """'8.3% [4.4, 15.1] (9/108 tasks; 9/108 episodes), step acc 0.71': a condition's figures in one cell,
    the interval over distinct tasks (`memory.stats`); '-' when the condition was not evaluated."""
    rate = row.get(f"pass_{name}")
    if rate is None or pd.isna(rate):
        return "-"
    tasks, score = row.get(f"tasks_{name}"), row.get(f"task_score_{name}")
    if tasks is None or pd.isna(tasks):  # a round evaluated before tasks were counted
        low, high, n = row.get(f"low_{name}"), row.get(f"high_{name}"), row.get(f"n_{name}")
        return f"{100 * rate:.1f}% [{100 * low:.1f}, {100 * high:.1f}] ({int(n)} episodes)"
    text = format_task_rate(float(score), int(tasks), int(row[f"wins_{name}"]), int(row[f"n_{name}"]))
    accuracy = row.get(f"step_acc_{name}")
    return text if accuracy is None or pd.isna(accuracy) else f"{text}, step acc {accuracy:.2f}"


def _learning_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per round: each condition's pass rate with its 95% interval over distinct tasks, its episodes and
    step accuracy, valid actions, RL groups, and the validation gate's record."""
    table = rows[["round"]].copy()
    for name in shown_conditions(rows):
        table[name] = [condition_cell(row, name) for row in rows.to_dict("records")]
    table["valid actions"] = rows["valid_actions"]
    for kind in ("kept_groups", "filtered_groups", "skipped_groups"):
        table[kind.replace("_", " ")] = rows[kind]
    table["validation gate"] = rows["gate"]
    if rows["ternary_gate"].notna().any():
        table["ternary student's gate"] = rows["ternary_gate"]
    return table


def _markdown_table(df: pd.DataFrame) -> str:
    def cell(value: Any) -> str:
        if value is None or (isinstance(value, float) and pd.isna(value)):
            return "-"
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def write_report(store: ExperienceStore, run: str, out: str | Path) -> Path:
    """Write report.md and its five PNGs into `out`; return the Markdown file's path."""
    import matplotlib

    matplotlib.use("Agg")
    run_id = store.get_run(run)
    if run_id is None:
        raise ReportError(f"there is no run named {run!r} in the store")
    rows = round_rows(store, run_id)
    if rows.empty:
        raise ReportError(f"run {run!r} has no rounds yet; start it with `oel loop --config RUN.toml`")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    losses = loss_curves(store, run_id)
    _plot_conditions(rows, "pass", "pass rate (%)", "held-out pass rate", folder / "pass_rate.png", True)
    _plot_conditions(
        rows, "tokens", "generated tokens / episode", "response length", folder / "tokens.png", False
    )
    _plot_knowledge(rows, folder / "knowledge.png")
    _plot_learning(rows, folder / "learning.png")
    _plot_losses(losses, folder / "loss.png")

    growth = queries.knowledge_growth(store, run_id)
    shown = shown_conditions(rows)
    text = [
        f"# Run `{run}`",
        "",
        f"{len(rows)} round(s); {int((rows['status'] == 'done').sum())} done.",
        "",
        "## Held-out pass rate",
        "",
        "![pass rate](pass_rate.png)",
        "",
        _markdown_table(
            rows[["round", "status", *[f"pass_{c}" for c in shown], "train_episodes", "train_pass"]]
        ),  # fmt: skip
        "",
        "## Learning curve",
        "",
        "![learning](learning.png)",
        "",
        _markdown_table(_learning_table(rows)),
        "",
        "## Tokens per episode",
        "",
        "![tokens](tokens.png)",
        "",
        _markdown_table(rows[["round", *[f"tokens_{c}" for c in shown]]]),
        "",
        "## Knowledge",
        "",
        "![knowledge](knowledge.png)",
        "",
        _markdown_table(growth.drop(columns=["run"], errors="ignore")) if not growth.empty else "(none yet)",
        "",
        "## Consolidation",
        "",
        "![loss](loss.png)",
        "",
        _markdown_table(
            rows[["round", "method", "from_checkpoint", "to_checkpoint", "ternary_checkpoint", "deployed"]]
        ),
        "",
        "## Checkpoint lineage",
        "",
        _markdown_table(queries.lineage(store, run_id)),
        "",
        "## Wall time per phase (seconds)",
        "",
        _markdown_table(rows[["round", "collect_s", "extract_s", "consolidate_s", "evaluate_s"]]),
        "",
    ]
    path = folder / "report.md"
    path.write_text("\n".join(text))
    return path
