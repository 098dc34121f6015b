"""A real writer process for the concurrency and crash tests (run as a script, not collected).

Modes:
  batch URL WORKER N   write N episodes (alternating write_episode and two-episode write_episodes), then exit
  hang URL             write one whole episode, print its id, then sleep "mid-episode" until killed
  mid URL STEPS        write one whole episode and print its id; then write a STEPS-step one, and inside
                       its transaction, after every row is inserted and before COMMIT, print how many
                       episode and step rows the transaction sees, then sleep there until killed
Step contents encode (worker, episode, step) so the parent can check that nothing got mixed up.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).parent))

from store_helpers import make_steps  # noqa: E402

from memory.store import ExperienceStore  # noqa: E402


def main(argv: list[str]) -> None:
    mode, url = argv[0], argv[1]
    store = ExperienceStore.open(url)
    if mode == "batch":
        worker, n = int(argv[2]), int(argv[3])
        pending = []
        for k in range(n):
            tag = worker * 100_000 + k
            header = {"env_id": "oel/Test-v0", "task_id": f"w{worker}", "seed": k, "split": "train"}
            steps = make_steps(3 + k % 5, tag=tag)
            result = {"total_return": float(k), "won": k % 2 == 0, "lost": False, "feedback": "done"}
            pending.append((header, steps, result))
            if k % 3 != 1:  # episodes 0, 3, 6, ... alone; 1+2, 4+5, ... as one two-episode transaction
                store.write_episodes(pending)
                pending = []
        if pending:
            store.write_episodes(pending)
    elif mode == "hang":
        header = {"env_id": "oel/Test-v0", "task_id": "done", "seed": 0, "split": "train"}
        result = {"total_return": 1.0, "won": True, "lost": False, "feedback": "done"}
        print(store.write_episode(header, make_steps(3, tag=1), result), flush=True)
        make_steps(2, tag=2)  # the next episode, still being played when the kill comes: never written
        time.sleep(600)
    elif mode == "mid":
        result = {"total_return": 1.0, "won": True, "lost": False, "feedback": "done"}
        whole = {"env_id": "oel/Test-v0", "task_id": "whole", "seed": 0, "split": "train"}
        print(store.write_episode(whole, make_steps(3, tag=1), result), flush=True)

        @event.listens_for(store.engine, "commit")
        def stop_before_commit(conn) -> None:
            cursor = conn.connection.dbapi_connection.cursor()  # the transaction's own connection
            cursor.execute("SELECT (SELECT count(*) FROM episodes), (SELECT count(*) FROM steps)")
            print(*cursor.fetchone(), flush=True)
            time.sleep(600)

        half = {"env_id": "oel/Test-v0", "task_id": "half", "seed": 1, "split": "train"}
        store.write_episode(half, make_steps(int(argv[2]), tag=2), result)
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
