"""Watch mode: a round starts once other processes wrote enough episodes; agents follow the deployment."""

from __future__ import annotations

import time

from loop_helpers import start, tiny_sections, train_seeds, write_run_file

from memory import queries
from memory.store import ExperienceStore


def test_watch_starts_a_round_from_another_process_and_agents_follow(tmp_path, tiny_path) -> None:
    sections = tiny_sections(tmp_path, tiny_path, watch={"min_episodes": 6, "poll_seconds": 0.3})
    run_file = write_run_file(tmp_path / "run.toml", sections)
    db = sections["run"]["db"]
    agent = ["play", "--run", "tiny", "--model", str(tiny_path), "--db", db, "--max-new-tokens", "8"]
    loop = start("loop", "--config", str(run_file), "--watch", log=tmp_path / "loop.log")
    try:
        with ExperienceStore.open(db) as store:
            deadline = time.monotonic() + 120
            while store.get_run("tiny") is None and time.monotonic() < deadline:
                time.sleep(0.2)
            # 4 episodes are not enough: the loop says it saw them and keeps waiting (a line it prints only
            # after the trigger did not fire), and has claimed nothing
            assert start(*agent, "--episodes", "4", "--batch", "4", log=tmp_path / "a1.log").wait(300) == 0
            log, seen_by = tmp_path / "loop.log", time.monotonic() + 120
            while "watching the store: 4/6 new episodes" not in log.read_text():
                assert loop.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < seen_by, "the loop never reported the 4 episodes"
                time.sleep(0.1)
            assert loop.poll() is None and train_seeds(store) == []
            # 4 more (seeds 4..7) pass the trigger of 6: the round claims all 8 and completes
            second = start(*agent, "--episodes", "4", "--batch", "4", "--seed", "4", log=tmp_path / "a2.log")
            assert second.wait(300) == 0
            assert loop.wait(timeout=600) == 0, (tmp_path / "loop.log").read_text()[-3000:]
            assert train_seeds(store) == list(range(8))
            run_id = store.get_run("tiny")
            new_checkpoint, _path = store.deployed_checkpoint(run_id)
            # a deployed agent started with --follow serves the new checkpoint from its next episode on
            follower = start(*agent, "--follow", "--episodes", "2", "--batch", "2", "--seed", "100",
                             log=tmp_path / "a3.log")  # fmt: skip
            assert follower.wait(300) == 0, (tmp_path / "a3.log").read_text()[-3000:]
            played = queries.episodes(store, run="tiny", split="train")
            assert set(played.loc[played["seed"] >= 100, "checkpoint"]) == {new_checkpoint}
    finally:
        if loop.poll() is None:
            loop.kill()
