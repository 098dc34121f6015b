"""One entry point for a consolidation job, from flat settings: what `oel consolidate` and the loop call.

Settings are one flat mapping, as a run file's `[consolidate]` table or the
command line gives them: `distill.job_config.JobConfig`'s shared fields plus the
chosen method's own (the `Config` of its class in `distill.methods`). `build` splits and
checks them (an unknown key names the method's own keys), so defaults live
only in the dataclasses. It also makes the environments the job would play
once with their options (`envs.checks`: the method's `env_id` / `env_kwargs`,
the validation's `eval_env`), refuses a run name that would lead its default
output folder out of `checkpoints/`, and `make_job` an output folder it could
not write: each is one ConsolidationError line before any model loads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium

from distill.checkpointing import check_run_name, check_writable
from distill.errors import ConsolidationError
from distill.job import ConsolidationJob, ConsolidationResult
from distill.job_config import JobConfig, split_fields
from distill.methods import method_class
from envs.checks import EnvConfigError, check_env
from memory.store import ExperienceStore


def _check_envs(job_config: JobConfig, method_config: Any) -> None:
    """Make the method's environment and the validation's once with the options they would be played with."""
    own = getattr(method_config, "env_id", None)
    own_kwargs = dict(getattr(method_config, "env_kwargs", None) or {})
    plays = [("env_id", "env_kwargs", own, own_kwargs)] if own is not None else []
    if job_config.eval_env is not None:
        kwargs = job_config.eval_env_kwargs
        if kwargs is None:  # as the job's validation does: the method's options on the method's env
            kwargs = own_kwargs if job_config.eval_env == own else {}
        plays.append(("eval_env", "eval_env_kwargs", job_config.eval_env, kwargs))
    for id_field, kwargs_field, env_id, kwargs in plays:
        try:
            check_env(env_id, kwargs)
        except EnvConfigError as exc:
            field = kwargs_field if env_id in gymnasium.registry else id_field
            raise ConsolidationError(f"{field}: {exc}") from None


def build(values: dict[str, Any]) -> tuple[JobConfig, Any, Any]:
    """(JobConfig, method config, method) from flat settings; ConsolidationError on a bad key or value."""
    method = method_class(
        values.get("method", JobConfig.method), values.get("action_mode", JobConfig.action_mode)
    )
    shared, own = split_fields(values, method.Config)
    job_config, method_config = JobConfig(**shared), method.Config(**own)
    if not job_config.out:  # the default folder is checkpoints/<run>/...
        check_run_name(job_config.run)
    _check_envs(job_config, method_config)
    return job_config, method_config, method(job_config, method_config)


def make_job(values: dict[str, Any], store: ExperienceStore) -> ConsolidationJob:
    """The job for flat `values` (see the module docstring), not yet set up."""
    job_config, method_config, method = build(values)
    check_writable(job_config.out_dir())
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
