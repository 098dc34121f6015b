"""Orchestration, the top floor: the `oel` command root, the online loop, its run files, evaluation, reports.

May import every other package (`envs`, `memory`, `agent`, `distill`); none of
them imports this one (docs/architecture.md).
"""
