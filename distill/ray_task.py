"""Consolidation as a Ray task: the loop's consolidate phase on a cluster, with its own resource request.

When a run has a `[ray]` section, `oel.loop` submits `distill.consolidation.consolidate`
through `consolidate_on_ray` instead of calling it in the driver. Why it is shaped so:

- Its own resources. The task asks Ray for `[ray] consolidate_num_cpus` and
  `consolidate_num_gpus`, new fields rather than the rollout workers'
  `num_cpus` / `num_gpus`: a trainer and a rollout worker rarely want the same
  (workers behind an openai server need no GPU; the trainer wants a whole one).
  The rollout workers stay alive, holding what they asked for, while the task
  runs, so a request the cluster cannot meet beside them is refused with one
  line instead of waiting forever.
- Retries are Ray's, and resumption is the job's. The task is submitted with
  `max_retries = [ray] max_task_retries` (the same field that bounds the
  rollout workers' retried chunks: "how often Ray retries work whose process
  died"). A retried task runs the same job again, which resumes from its own
  newest snapshot in the job's folder (`distill.checkpointing`), so a killed
  task loses at most the steps since that snapshot.
- Nothing heavy is pickled: the task gets the flat settings and the store's URL,
  opens its own store handle, and loads the models itself. The checkpoint
  folders (the start model, the job's `out`) must be reachable at the same paths
  on every node, as for the rollout workers; the loop passes an absolute `out`.
- Progress stays in the task: it returns the per-step losses with the result
  (a driver's callback cannot run inside it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.ray_pool import RaySettings
from distill.consolidation import consolidate
from distill.errors import ConsolidationError
from distill.job import ConsolidationResult
from memory.store import ExperienceStore


@dataclass
class RemoteConsolidation:
    """What the consolidation task returned: the job's result, its losses, and where it ran."""

    result: ConsolidationResult
    losses: list[float] = field(default_factory=list)
    node: str = ""
    """The first 8 characters of the Ray node id the (last) attempt ran on."""


def _consolidate_task(values: dict[str, Any], db_url: str) -> RemoteConsolidation:
    """The task's body: its own store handle, the job run (or resumed) end to end."""
    import ray

    losses: list[float] = []
    with ExperienceStore.open(db_url) as store:
        result = consolidate(values, store, lambda metrics: losses.append(metrics["loss"]))
    return RemoteConsolidation(result, losses, ray.get_runtime_context().get_node_id()[:8])


def _check_fits(ray: Any, settings: RaySettings) -> None:
    """Refuse a request the cluster cannot meet next to the rollout workers (it would wait forever)."""
    total = ray.cluster_resources()
    for name, want, per_worker in (("CPU", settings.consolidate_num_cpus, settings.num_cpus),
                                   ("GPU", settings.consolidate_num_gpus, settings.num_gpus)):  # fmt: skip
        have, held = total.get(name, 0.0), settings.workers * per_worker
        if want > have - held:
            raise ConsolidationError(
                f"the consolidation task asks Ray for {want:g} {name}s, but the cluster has {have:g} and the "
                f"{settings.workers} rollout workers hold {held:g}: lower [ray] consolidate_num_"
                f"{name.lower()}s or the workers' num_{name.lower()}s, or add a node"
            )


def consolidate_on_ray(values: dict[str, Any], db_url: str, settings: RaySettings) -> RemoteConsolidation:
    """Run (or resume) one consolidation job as a Ray task on the connected cluster; wait for it.

    Ray must already be initialised (the run's `RolloutPool` does it). A job
    error comes back as ConsolidationError with its first line; a task that
    died more often than it may be retried says so, and a rerun resumes it.
    An interrupted driver cancels the task.
    """
    import ray

    _check_fits(ray, settings)
    task = ray.remote(_consolidate_task).options(
        num_cpus=settings.consolidate_num_cpus, num_gpus=settings.consolidate_num_gpus,
        max_retries=settings.max_task_retries, retry_exceptions=False, name="oel-consolidate",
    )  # fmt: skip
    ref = task.remote(values, db_url)
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if exc.cause is not None else exc
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        if not isinstance(cause, ConsolidationError):
            first = f"the consolidation task failed: {type(cause).__name__}: {first}"
        raise ConsolidationError(first) from None
    except ray.exceptions.RayError as exc:  # its process or node died more often than it may be retried
        raise ConsolidationError(
            f"the consolidation task did not finish ({type(exc).__name__}) in "
            f"{settings.max_task_retries + 1} attempts; run again to resume it from its last snapshot"
        ) from None
    except KeyboardInterrupt:  # the driver stops: so does the job, before a rerun starts another on `out`
        ray.cancel(ref, force=True)
        raise
