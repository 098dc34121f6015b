"""Consolidation: move knowledge and rewards into the weights (OPCD, baselines, RL), dense or sparse-ternary.

May import `envs`, `memory` and `agent`; never the orchestration floor `oel`
(docs/architecture.md). One job shell (`distill.job`), one module per method
(`distill.methods`).
"""
