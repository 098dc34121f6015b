"""kill -9 the loop during collection, then during consolidation: it resumes, nothing lost or doubled.

The loop runs as a real `oel loop` subprocess on a tiny random Llama (the
real model would make the kill windows minutes long); the test process
watches the store and sends SIGKILL once the phase is visibly under way.
"""

from __future__ import annotations

import time

from loop_helpers import (
    consolidation_steps,
    consolidations,
    phase_complete,
    start,
    tiny_sections,
    train_seeds,
    write_run_file,
)

from memory.store import ExperienceStore

EPISODES, STEPS = 24, 12


def _kill_when(proc, store: ExperienceStore, ready, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the loop exited (rc {proc.returncode}) before {what}"
        if ready():
            proc.kill()
            proc.wait()
            return
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"timed out waiting for {what}")


def test_sigkill_in_collection_and_in_consolidation_then_resume(tmp_path, tiny_path) -> None:
    sections = tiny_sections(
        tmp_path, tiny_path,
        collect={"episodes": EPISODES, "batch": 4}, consolidate={"steps": STEPS, "save_every": 1},
    )  # fmt: skip
    run_file = write_run_file(tmp_path / "run.toml", sections)
    with ExperienceStore.open(sections["run"]["db"]) as store:
        # 1. killed while collecting: some episodes are in, the phase is not complete
        proc = start("loop", "--config", str(run_file), log=tmp_path / "run1.log")
        _kill_when(proc, store, lambda: 4 <= len(train_seeds(store)) < EPISODES, "collection under way")
        assert not phase_complete(store, "collect")
        partial = train_seeds(store)

        # 2. run again, killed while consolidating (after some logged steps, before the end)
        proc = start("loop", "--config", str(run_file), log=tmp_path / "run2.log")
        _kill_when(proc, store, lambda: 2 <= consolidation_steps(store) < STEPS, "consolidation under way")
        assert phase_complete(store, "collect") and not phase_complete(store, "consolidate")
        assert train_seeds(store) == list(range(EPISODES)), "collection finished each seed exactly once"
        assert set(partial) <= set(train_seeds(store))

        # 3. run again to the end
        proc = start("loop", "--config", str(run_file), log=tmp_path / "run3.log")
        assert proc.wait(timeout=600) == 0, (tmp_path / "run3.log").read_text()[-3000:]
        assert train_seeds(store) == list(range(EPISODES))
        assert consolidation_steps(store) == STEPS, "every optimizer step logged once (primary key)"
        assert [status for _id, status in consolidations(store)] == ["complete"], "one job, resumed"
        assert phase_complete(store, "deploy")


def test_sigkill_during_scored_rl_updates_then_resume_counts_nothing_twice(tmp_path, tiny_path) -> None:
    from memory import queries

    rl_steps, groups, group_size = 6, 2, 4
    sections = tiny_sections(tmp_path, tiny_path, collect={"episodes": 8, "batch": 8, "group_size": 4})
    sections["run"]["action_mode"] = "scored"
    sections["extract"] = {"source": "none"}
    sections["evaluate"] = {"episodes": 2, "batch": 2, "conditions": ["consolidated"]}
    sections["consolidate"] = {
        "method": "rl", "source": "rollouts", "groups": groups, "group_size": group_size, "steps": rl_steps,
        "save_every": 2, "lr": 1e-4, "temperature": 1.5,
    }  # fmt: skip
    run_file = write_run_file(tmp_path / "run.toml", sections)
    with ExperienceStore.open(sections["run"]["db"]) as store:
        proc = start("loop", "--config", str(run_file), log=tmp_path / "rl1.log")
        _kill_when(proc, store, lambda: 2 <= consolidation_steps(store) < rl_steps, "RL updates under way")
        assert not phase_complete(store, "consolidate")
        proc = start("loop", "--config", str(run_file), log=tmp_path / "rl2.log")
        assert proc.wait(timeout=600) == 0, (tmp_path / "rl2.log").read_text()[-3000:]
        assert consolidation_steps(store) == rl_steps, "every optimizer step logged once (primary key)"
        assert [status for _id, status in consolidations(store)] == ["complete"], "one job, resumed"
        ((consolidation_id, _status),) = consolidations(store)
        played = queries.episodes(store, run="tiny")
        for step in range(1, rl_steps + 1):
            mine = played[played["policy"] == f"rl:c{consolidation_id}:s{step}"]
            assert len(mine) == groups * group_size, f"step {step}'s groups were played exactly once"
        assert set(played[played["policy"].str.startswith("rl:")]["action_mode"]) == {"scored"}
        assert train_seeds(store) == [0, 0, 0, 0, 1, 1, 1, 1], "the round's groups: 2 seeds x 4"
        # the report draws the learning curve from what the store holds, RL groups included
        from oel.report import write_report
        from oel.run_data import round_rows

        rows = round_rows(store, store.get_run("tiny"))
        assert rows.loc[0, "rl_steps"] == rl_steps and rows.loc[0, "valid_actions"] == 1.0
        counted = rows.loc[0, ["kept_groups", "filtered_groups", "skipped_groups"]].sum()
        assert counted == rl_steps * groups
        text = write_report(store, "tiny", tmp_path / "report").read_text()
        assert "## Learning curve" in text and (tmp_path / "report" / "learning.png").is_file()
