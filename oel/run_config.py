"""A run of the online loop as one TOML file: a dataclass per section, every field defaulted and explained.

The sections mirror the round's phases and reuse each component's own
config class where one exists, so a field means the same thing in a run file
as on the component's command line:

    [run]          RunSettings          what to deploy where, how many rounds; the policy backend
                                        (backend = "openai" plays against base_url, the served model)
    [sampling]     agent SamplingParams how the deployed policy samples (collection and evaluation)
    [collect]      CollectSettings      train episodes per round
    [extract]      ExtractSettings      where knowledge comes from (policy, model, file, none) and
                                        how it is extracted (memory.knowledge's ExtractionConfig)
    [consolidate]  distill JobConfig + the method's Config (OPCD / baselines / RL, dense or ternary)
    [ternary]      oel.ternary_round    optional: distil each round's dense model into a packed
                                        ternary student, evaluate both, deploy the one it names
    [evaluate]     EvaluateSettings     held-out episodes per condition
    [watch]        WatchSettings        triggers for `oel loop --watch`
    [ray]          agent RaySettings    rollout workers on a Ray cluster (address, workers); none: one process

The loader refuses unknown sections and keys and wrong value types with one
line that names the file, the section and the key, because a typo in a run
file should not silently fall back to a default for a job of many minutes. The
fields of `[consolidate]` that the loop sets itself (round, run, model,
knowledge, out) are refused there too, and its other keys are checked
against the chosen method's own settings (`distill.consolidation.build`).
`[run]`'s environment is made once with its `env_kwargs` (`envs.checks`), and
its name must be usable as the name of its checkpoint folder.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.backends import backend_options, check_backend
from agent.forms import ACTION_MODES
from agent.policy import PolicyError, SamplingParams
from agent.ray_pool import RaySettings
from distill.checkpointing import check_run_name
from distill.consolidation import build as build_consolidation
from distill.errors import ConsolidationError
from distill.job_config import JobConfig
from distill.methods import method_class
from envs.checks import EnvConfigError, check_env
from memory.knowledge.extract import ExtractionConfig
from oel.conditions import CONDITIONS, DEFAULT_CONDITIONS, TERNARY
from oel.ternary_round import TernaryRoundError, job_values, parse_table


class LoopConfigError(ValueError):
    """A run file that cannot be used, with the file, section and key in the message."""


@dataclass
class RunSettings:
    """Identity and placement of the run."""

    name: str = "default"
    """Run name in the store (running the same file again resumes it) and its checkpoint folder's name, so
    it holds no path separator and is not '.' or '..'."""
    env_id: str = "oel/FrozenLake-v0"
    """Registered environment id (`oel envs list`)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for `gymnasium.make` (for example size, holes, max_steps); the environment is
    made once with them when the file is loaded, so a bad option is refused before anything runs."""
    rounds: int = 2
    """Rounds to complete in total (a rerun continues up to this many)."""
    model: str | None = None
    """Starting checkpoint (HF folder); None: the embedded SmolLM2-135M-Instruct. Backend openai: the
    folder the server was started on, whose absolute path is the model name it serves (vLLM's default)."""
    backend: str = "hf"
    """Policy backend for collection and evaluation (agent.backends): hf, vllm, langchain, openai."""
    base_url: str | None = None
    """Backend openai (only): the OpenAI-compatible server's base URL, e.g. http://127.0.0.1:8000/v1."""
    action_mode: str = "text"
    """How the policy acts, everywhere in the run: text (OEL's free-text protocol) or scored (it scores the
    game's admissible commands and samples one); consolidation trains in the same mode."""
    db: str | None = None
    """Store URL; None: $OEL_DB_URL, else sqlite file oel.db in the working directory."""
    checkpoints: str = "checkpoints"
    """Folder for consolidated checkpoints: <checkpoints>/<name>/round-<r>."""

    def policy_options(self) -> dict[str, Any]:
        """The backend's keyword options (`base_url` for openai), for this process's policy and workers'."""
        return backend_options(self.backend, self.base_url)


@dataclass
class CollectSettings:
    """Collection on the train split with the deployed checkpoint."""

    episodes: int = 16
    """Train episodes per round: episodes / group_size seeds, round r starting after round r-1's."""
    group_size: int = 1
    """Episodes played from each seed; G >= 2 makes the round's episodes GRPO groups (RL source = round)."""
    batch: int = 16
    """Environments stepped together (one batched policy call per step)."""
    seed: int = 0
    """First train seed of round 0."""
    temperature: float | None = None
    """Sampling temperature while collecting (exploration; scored: over the candidates); None: [sampling]."""
    with_knowledge: bool = False
    """Deploy with the latest knowledge in context while collecting (OEL deploys without it)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Options laid over [run] env_kwargs while collecting only, a curriculum (max_steps = 14 gives
    exploration the time to find wins); validation and evaluation play the run's own game."""

    def seeds(self, round_index: int) -> list[int]:
        """The round's train seeds, each repeated group_size times."""
        n = self.episodes // self.group_size
        first = self.seed + round_index * n
        return [s for s in range(first, first + n) for _ in range(self.group_size)]


EXTRACT_SOURCES = ("policy", "model", "file", "none")


@dataclass
class ExtractSettings(ExtractionConfig):
    """Where a round's knowledge comes from, and how extraction runs (memory.knowledge's settings)."""

    source: str = "policy"
    """policy (the deployed model extracts, OEL), model (extractor_model does), file (a person's file,
    `oel knowledge add`), or none (no knowledge: RL-only runs skip the phase)."""
    extractor_model: str | None = None
    """source = model: the extractor's local HF folder, or for the langchain backend an import spec."""
    extractor_backend: str = "hf"
    """source = model: the extractor's policy backend."""
    file: str | None = None
    """source = file: the Markdown file of '- EXPERIENCE ITEM:' lines (relative to the run file)."""
    author: str = "person"
    """source = file: recorded as the items' author."""


@dataclass
class EvaluateSettings:
    """Held-out evaluation: the same maps for every condition and every round."""

    episodes: int = 16
    """Held-out tasks per condition (test split seeds seed .. seed+episodes-1)."""
    batch: int = 16
    """Environments stepped together."""
    seed: int = 0
    """First held-out task."""
    conditions: list[str] = field(default_factory=lambda: list(DEFAULT_CONDITIONS))
    """Which of: none (M_r alone), knowledge (M_r with K_r in context), consolidated (M_r+1 alone), ternary
    (the packed student of M_r+1; a run with a [ternary] table evaluates it whether listed or not)."""


@dataclass
class WatchSettings:
    """When `oel loop --watch` starts a round from episodes other processes write."""

    min_episodes: int = 32
    """Start a round once at least this many new train episodes are in the store."""
    every_minutes: float = 0.0
    """Also start one this long after the previous round ended if any new episode came (0: off)."""
    poll_seconds: float = 5.0
    """How often the store is polled."""


@dataclass
class LoopConfig:
    """One run of the online loop; see the module docstring for the sections."""

    run: RunSettings = field(default_factory=RunSettings)
    sampling: SamplingParams = field(default_factory=SamplingParams)
    collect: CollectSettings = field(default_factory=CollectSettings)
    extract: ExtractSettings = field(default_factory=ExtractSettings)
    consolidate: dict[str, Any] = field(default_factory=dict)
    """Fields of `distill.job_config.JobConfig` and of the chosen method's Config (method, steps, lr, ...)."""
    ternary: dict[str, Any] = field(default_factory=dict)
    """Empty: no ternary student. Else the distillation job's fields (as [consolidate]'s) and `deploy`."""
    evaluate: EvaluateSettings = field(default_factory=EvaluateSettings)
    watch: WatchSettings = field(default_factory=WatchSettings)
    ray: RaySettings = field(default_factory=RaySettings)

    def policy_options(self) -> dict[str, Any]:
        """The loop's own policy's options: the backend's, and for an hf policy playing scored actions in a
        run that trains only the top blocks, `trunk_layers` (the frozen blocks' output of every state is
        then computed once for the whole run, `agent.trunk_cache`)."""
        options = self.run.policy_options()
        layers = self.consolidate.get("train_layers")
        dense = self.consolidate.get("student", "dense") == "dense"
        trunk = self.consolidate.get("trunk_cache", True) and dense
        if self.run.backend == "hf" and self.run.action_mode == "scored" and layers and trunk:
            options["trunk_layers"] = int(layers)
        return options

    def consolidate_values(
        self, round_index: int, model: str, knowledge: int | None, out: str
    ) -> dict[str, Any]:
        """The round's consolidation settings: the [consolidate] fields plus what the loop decides.

        `knowledge` is dropped for methods that use none, and `steps` is filled in.
        """
        values = self._with_eval_env({
            **self.consolidate, "round": round_index, "run": self.run.name, "model": model, "out": out,
            "action_mode": self.run.action_mode,
        })  # fmt: skip
        job_config, _method_config, method = build_consolidation(values)
        if method.uses_knowledge:
            values["knowledge"] = knowledge
        values["steps"] = job_config.steps
        values["method"] = job_config.method
        return values

    @property
    def deploys(self) -> str:
        """Which consolidated model the deploy phase deploys: dense, or the ternary student."""
        return parse_table(self.ternary)[1] if self.ternary else "dense"

    def ternary_values(self, round_index: int, teacher: str, start: str, out: str) -> dict[str, Any]:
        """The round's distillation into the ternary student (`oel.ternary_round`), `steps` filled in."""
        table, _deploy = parse_table(self.ternary)
        values = self._with_eval_env(job_values(
            table, run=self.run.name, round_index=round_index, action_mode=self.run.action_mode,
            teacher=teacher, start=start, out=out,
        ))  # fmt: skip
        values["steps"] = build_consolidation(values)[0].steps
        return values

    def _with_eval_env(self, values: dict[str, Any]) -> dict[str, Any]:
        """Validation plays the run's own environment, with its options, unless the table names one."""
        if "eval_env" not in values:
            values["eval_env"] = self.run.env_id
            values.setdefault("eval_env_kwargs", dict(self.run.env_kwargs))
        return values


LOOP_SET = ("round", "run", "model", "knowledge", "out", "action_mode")
"""Consolidation settings the loop fills in itself."""


def _type_ok(value: Any, annotation: Any) -> bool:
    """A light check of a TOML value against a field's annotation (TOML has few types)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arm) for arm in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is Any:
        return True
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is not None:
        return isinstance(value, origin)
    return isinstance(value, annotation)


def _build(cls: type, table: Any, where: str, skip: tuple[str, ...] = ()) -> Any:
    """Instantiate dataclass `cls` from a TOML table, refusing unknown keys and wrong types."""
    if not isinstance(table, dict):
        raise LoopConfigError(f"{where} must be a table, got {type(table).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.name not in skip}
    values = {}
    for key, value in table.items():
        if key not in known:
            hint = f"; the loop sets {key!r} itself" if key in skip else ""
            raise LoopConfigError(
                f"{where}: unknown key {key!r}{hint}; valid keys: {', '.join(sorted(known))}"
            )
        annotation = hints[key]
        if dataclasses.is_dataclass(annotation):
            values[key] = _build(annotation, value, f"{where}.{key}")
            continue
        if not _type_ok(value, annotation):
            raise LoopConfigError(f"{where}.{key}: expected {annotation}, got {value!r}")
        values[key] = value
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:  # the component's own validation (PolicyError is a ValueError)
        raise LoopConfigError(f"{where}: {exc}") from None


def _check_consolidate_types(table: dict[str, Any], action_mode: str, where: str) -> None:
    """Type-check `[consolidate]` keys against JobConfig and the chosen method's Config in `action_mode`."""
    try:
        method_config = method_class(table.get("method", JobConfig.method), action_mode).Config
    except ConsolidationError as exc:
        raise LoopConfigError(f"{where}: {exc}") from None
    hints = {**typing.get_type_hints(JobConfig), **typing.get_type_hints(method_config)}
    for key, value in table.items():
        if key in hints and not _type_ok(value, hints[key]):
            raise LoopConfigError(f"{where}.{key}: expected {hints[key]}, got {value!r}")


def parse_loop_config(data: dict[str, Any], source: str = "<config>") -> LoopConfig:
    """Build a LoopConfig from parsed TOML; LoopConfigError names the offending section and key."""
    sections = {f.name for f in dataclasses.fields(LoopConfig)}
    unknown = set(data) - sections
    if unknown:
        raise LoopConfigError(
            f"{source}: unknown section(s) {', '.join(sorted(unknown))}; valid: {', '.join(sorted(sections))}"
        )
    config = LoopConfig()
    for section in ("run", "collect", "evaluate", "watch", "extract", "sampling", "ray"):
        if section in data:
            current = getattr(config, section)
            setattr(config, section, _build(type(current), data[section], f"{source} [{section}]"))
    if "consolidate" in data:
        table = data["consolidate"]
        if not isinstance(table, dict):
            raise LoopConfigError(f"{source} [consolidate] must be a table")
        for key in LOOP_SET:
            if key in table:
                raise LoopConfigError(
                    f"{source} [consolidate]: unknown key {key!r}; the loop sets {key!r} itself"
                )
        _check_consolidate_types(table, config.run.action_mode, f"{source} [consolidate]")
        config.consolidate = dict(table)
    if "ternary" in data:
        try:
            job, _deploy = parse_table(data["ternary"])
        except TernaryRoundError as exc:
            raise LoopConfigError(f"{source} [ternary]: {exc}") from None
        _check_consolidate_types(job, config.run.action_mode, f"{source} [ternary]")
        config.ternary = dict(data["ternary"])
    validate(config, source)
    return config


def validate(config: LoopConfig, source: str) -> None:
    """Cross-field checks the dataclasses cannot make alone."""
    for name in ("rounds",):
        if getattr(config.run, name) < 1:
            raise LoopConfigError(f"{source} [run].{name} must be >= 1")
    if config.ray.workers < 1:
        raise LoopConfigError(f"{source} [ray].workers must be >= 1, got {config.ray.workers}")
    for section in ("collect", "evaluate"):
        for name in ("episodes", "batch"):
            if getattr(getattr(config, section), name) < 1:
                raise LoopConfigError(f"{source} [{section}].{name} must be >= 1")
    collect = config.collect
    if collect.group_size < 1 or collect.episodes % collect.group_size:
        raise LoopConfigError(
            f"{source} [collect].group_size must be >= 1 and divide episodes ({collect.episodes}), "
            f"got {collect.group_size}"
        )
    if collect.temperature is not None and collect.temperature < 0:
        raise LoopConfigError(f"{source} [collect].temperature must be >= 0, got {collect.temperature}")
    extract = config.extract
    if extract.source not in EXTRACT_SOURCES:
        raise LoopConfigError(
            f"{source} [extract].source must be one of {', '.join(EXTRACT_SOURCES)}, got {extract.source!r}"
        )
    if extract.source == "file" and not extract.file:
        raise LoopConfigError(f'{source} [extract]: source = "file" needs file = "PATH.md"')
    if extract.source == "model" and not extract.extractor_model:
        raise LoopConfigError(f'{source} [extract]: source = "model" needs extractor_model = "PATH"')
    bad = [c for c in config.evaluate.conditions if c not in CONDITIONS]
    if bad:
        raise LoopConfigError(
            f"{source} [evaluate].conditions: unknown {bad}; choose from {', '.join(CONDITIONS)}"
        )
    try:
        check_run_name(config.run.name)
    except ConsolidationError as exc:
        raise LoopConfigError(f"{source} [run].name: {exc}") from None
    try:
        check_env(config.run.env_id, config.run.env_kwargs)
    except EnvConfigError as exc:
        raise LoopConfigError(f"{source} [run]: {exc}") from None
    if config.collect.env_kwargs:
        try:
            check_env(config.run.env_id, {**config.run.env_kwargs, **config.collect.env_kwargs})
        except EnvConfigError as exc:
            raise LoopConfigError(f"{source} [collect].env_kwargs: {exc}") from None
    try:
        check_backend(config.run.backend)
    except PolicyError as exc:
        raise LoopConfigError(f"{source} [run].backend: {exc}") from None
    if config.run.backend == "openai" and not config.run.base_url:
        raise LoopConfigError(
            f'{source} [run]: backend = "openai" needs base_url = "http://HOST:8000/v1" (the server\'s URL)'
        )
    if config.run.base_url is not None and config.run.backend != "openai":
        raise LoopConfigError(
            f'{source} [run].base_url is for backend = "openai" only, got backend {config.run.backend!r}'
        )
    if config.run.base_url is not None and not config.run.base_url.startswith(("http://", "https://")):
        raise LoopConfigError(f"{source} [run].base_url must be an http:// or https:// URL")
    if config.run.action_mode not in ACTION_MODES:
        raise LoopConfigError(
            f"{source} [run].action_mode must be one of {', '.join(ACTION_MODES)}, "
            f"got {config.run.action_mode!r}"
        )
    try:
        config.consolidate_values(0, "model", None, "out")
    except (ConsolidationError, TypeError) as exc:
        raise LoopConfigError(f"{source} [consolidate]: {exc}") from None
    _validate_ternary(config, source)


def _validate_ternary(config: LoopConfig, source: str) -> None:
    """A `[ternary]` table builds, plays on a backend that loads packed students, and is evaluated."""
    if TERNARY in config.evaluate.conditions and not config.ternary:
        raise LoopConfigError(
            f"{source} [evaluate].conditions names {TERNARY!r}, but no [ternary] table makes a student"
        )
    if not config.ternary:
        return
    if config.run.backend != "hf":
        raise LoopConfigError(
            f"{source} [ternary]: the packed student plays on the hf backend only (its CPU kernel), not "
            f"{config.run.backend!r}"
        )
    try:
        config.ternary_values(0, "teacher", "model", "out")
    except (ConsolidationError, TypeError) as exc:
        raise LoopConfigError(f"{source} [ternary]: {exc}") from None
    if TERNARY not in config.evaluate.conditions:  # the round evaluates both models (oel.ternary_round)
        config.evaluate.conditions.append(TERNARY)


def load_loop_config(path: str | Path) -> LoopConfig:
    """Read and check a run file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LoopConfigError(f"run file {path} does not exist (presets are in runs/)") from None
    except IsADirectoryError:
        raise LoopConfigError(
            f"run file {path} is a folder; name a .toml file (presets are in runs/)"
        ) from None
    except OSError as exc:
        raise LoopConfigError(f"cannot read run file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise LoopConfigError(
            f"run file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise LoopConfigError(f"{path} is not valid TOML: {exc}") from None
    config = parse_loop_config(data, str(path))
    if config.extract.file and not Path(config.extract.file).is_absolute():
        config.extract.file = str(path.parent / config.extract.file)
    return config
