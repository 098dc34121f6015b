"""One entry point for a consolidation job, from flat settings: what `oel consolidate` and the loop call.

Settings are one flat mapping, as a run file's `[consolidate]` table or the
command line gives them: `distill.job.JobConfig`'s shared fields plus the
chosen method's own (`distill.methods.<method>.Config`). `build` splits and
checks them (an unknown key names the method's own keys), so defaults live
only in the dataclasses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from distill.job import ConsolidationJob, ConsolidationResult, JobConfig, split_fields
from distill.methods import method_module
from memory.store import ExperienceStore


def build(values: dict[str, Any]) -> tuple[JobConfig, Any, Any]:
    """(JobConfig, method config, method) from flat settings; ConsolidationError on a bad key or value."""
    module = method_module(
        values.get("method", JobConfig.method), values.get("action_mode", JobConfig.action_mode)
    )
    shared, own = split_fields(values, module.Config)
    job_config, method_config = JobConfig(**shared), module.Config(**own)
    return job_config, method_config, module.Method(job_config, method_config)


def make_job(values: dict[str, Any], store: ExperienceStore) -> ConsolidationJob:
    """The job for flat `values` (see the module docstring), not yet set up."""
    job_config, method_config, method = build(values)
    return ConsolidationJob(job_config, method, method_config, store)


def consolidate(
    values: dict[str, Any], store: ExperienceStore, on_step: Callable[[dict[str, Any]], None] | None = None
) -> ConsolidationResult:
    """Run (or resume) one consolidation job end to end."""
    job = make_job(values, store)
    try:
        job.setup()
        return job.train(on_step)
    finally:
        job.cleanup()
