"""A policy behind an OpenAI-compatible server: vLLM's `python -m vllm.entrypoints.openai.api_server`.

The server does the batching, so a batch of conversations becomes that many
concurrent chat-completion requests (threads over the standard library's HTTP
client: no new dependency). What it records, and why it is shaped so:

- Exact tokens. The request asks for per-token log-probs and, through vLLM's
  extensions, for token ids: `return_tokens_as_token_ids` (each log-prob entry's
  token reads `token_id:N`) and `return_token_ids` (the prompt's and the
  completion's ids). The completion ids come from `token_ids`, else from the
  log-prob entries; a server that returns neither (OpenAI itself, most
  proxies) gets the ids and log-probs recorded as missing, never guessed from
  text, as the LangChain backend does. `extensions=False` leaves vLLM's fields
  (and `top_k`) out for servers that reject unknown fields.
- Log-probs follow `agent.policy`'s definition, log_softmax(logits / T) over the
  full vocabulary, or they are not kept. A server cannot be told that
  definition: vLLM's default (`--logprobs-mode raw_logprobs`) gives log-probs
  at T = 1, which are ours only when T = 1 (or greedy, where we take T = 1);
  `processed_logprobs` gives them after temperature AND top-k/top-p, which are
  ours only with top_k = 0 and top_p = 1. `logprobs_mode` says which the server
  runs, and log-probs that would mean something else are recorded as missing
  (RL would otherwise start from wrong importance ratios).
- Failures are bounded. Every request has a timeout, and a timed-out, refused or
  5xx request is retried `retries` times with backoff; after that, and for a
  request the server rejects (4xx), `generate` raises PolicyError with one line.
  The rollout then stops before writing the unfinished episodes, so they are
  played again on the next run (a replay skips what was stored): a slow server
  neither hangs a worker nor loses an episode.
- The server's weights are the server's: `reload` cannot load a checkpoint
  folder into it and says so.

This backend cannot score continuations, so the scored action mode refuses it.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agent.policy import Completion, Conversation, PolicyError, SamplingParams

LOGPROBS_MODES = ("raw", "processed")
_RETRIED_STATUS = {408, 429, 500, 502, 503, 504}


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:300]


class _Retry(Exception):
    """A failure worth another attempt (timeout, refused connection, 5xx)."""


class OpenAIPolicy:
    """Chat completions from an OpenAI-compatible server, with token ids and log-probs where it gives them."""

    tokenizer = None
    can_score = False

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str = "EMPTY",
        timeout_s: float = 60.0,
        retries: int = 2,
        backoff_s: float = 0.5,
        concurrency: int = 32,
        extensions: bool = True,
        logprobs_mode: str = "raw",
    ) -> None:
        if not base_url:
            raise PolicyError("the openai backend needs --base-url URL, e.g. http://127.0.0.1:8000/v1")
        if not base_url.startswith(("http://", "https://")):
            raise PolicyError(f"--base-url must be an http:// or https:// URL, got {base_url!r}")
        if not model:
            raise PolicyError("the openai backend needs --model NAME, the model name the server serves")
        if logprobs_mode not in LOGPROBS_MODES:
            raise PolicyError(
                f"logprobs_mode must be one of {', '.join(LOGPROBS_MODES)}, got {logprobs_mode!r}"
            )
        if timeout_s <= 0 or retries < 0 or concurrency < 1:
            raise PolicyError("timeout_s must be > 0, retries >= 0 and concurrency >= 1")
        self.model = str(model)
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.concurrency = concurrency
        self.extensions = extensions
        self.logprobs_mode = logprobs_mode
        self.name = f"openai:{self.model}"

    def reload(self, path: str) -> None:
        """A server's weights cannot be swapped from here: restart it on the new checkpoint instead."""
        raise PolicyError(
            f"the openai backend cannot load {path} into the server at {self.base_url}; "
            "restart the server on that checkpoint (or use the hf or vllm backend to follow deployments)"
        )

    def _body(self, conversation: Conversation, params: SamplingParams, index: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model, "messages": conversation, "max_tokens": params.max_new_tokens,
            "temperature": params.temperature, "top_p": params.top_p, "logprobs": True, "top_logprobs": 0,
        }  # fmt: skip
        if params.seed is not None:
            body["seed"] = params.seed + index
        if self.extensions:
            body |= {
                "return_tokens_as_token_ids": True,
                "return_token_ids": True,
                "top_k": params.top_k or -1,
            }
        return body

    def _logprobs_are_ours(self, params: SamplingParams) -> bool:
        """Whether the server's log-probs equal log_softmax(logits / T) under these settings."""
        if self.logprobs_mode == "raw":
            return params.greedy or params.temperature == 1.0
        return not params.greedy and params.top_k == 0 and params.top_p == 1.0

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        """One request with bounded retries; PolicyError with one line when it cannot be answered."""
        url = f"{self.base_url}/chat/completions"
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"}
        reason = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                request = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310 (http(s) only)
                return self._attempt(request)
            except _Retry as exc:
                reason = str(exc)
        raise PolicyError(
            f"the openai server at {self.base_url} did not answer after {self.retries + 1} attempts "
            f"(timeout {self.timeout_s:g} s): {reason}"
        )

    def _attempt(self, request: urllib.request.Request) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 (checked)
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = _first_line(exc.read().decode(errors="replace"))
            if exc.code in _RETRIED_STATUS:
                raise _Retry(f"HTTP {exc.code}: {detail}") from None
            raise PolicyError(f"the openai server at {self.base_url} refused the request: HTTP {exc.code}: "
                              f"{detail}") from None  # fmt: skip
        except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
            raise _Retry(_first_line(str(getattr(exc, "reason", exc))) or type(exc).__name__) from None
        except json.JSONDecodeError:
            raise PolicyError(
                f"the openai server at {self.base_url} answered with something not JSON"
            ) from None

    def _completion(self, reply: dict[str, Any], params: SamplingParams, latency: float) -> Completion:
        try:
            choice = reply["choices"][0]
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise PolicyError(
                f"the openai server at {self.base_url} answered without a chat completion: {str(reply)[:200]}"
            ) from None
        entries = (choice.get("logprobs") or {}).get("content") or []
        ids = choice.get("token_ids")
        if ids is None and entries and all(str(e.get("token", "")).startswith("token_id:") for e in entries):
            ids = [int(e["token"].removeprefix("token_id:")) for e in entries]
        logprobs = None
        if ids is not None and len(entries) == len(ids) and self._logprobs_are_ours(params):
            logprobs = [float(e["logprob"]) for e in entries]
        prompt_ids = reply.get("prompt_token_ids") or choice.get("prompt_token_ids")
        return Completion(
            text=text, token_ids=None if ids is None else [int(i) for i in ids], logprobs=logprobs,
            prompt_ids=None if ids is None or prompt_ids is None else [int(i) for i in prompt_ids],
            finish_reason=choice.get("finish_reason"), latency_s=latency,
        )  # fmt: skip

    def generate(self, conversations: Sequence[Conversation], params: SamplingParams) -> list[Completion]:
        """One concurrent request per conversation; the completions come back in order."""
        if not conversations:
            return []
        start = time.perf_counter()
        bodies = [self._body(c, params, i) for i, c in enumerate(conversations)]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(bodies))) as pool:
            replies = list(pool.map(self._post, bodies))
        latency = time.perf_counter() - start
        return [self._completion(reply, params, latency) for reply in replies]
