"""A policy backed by any LangChain chat model, for agents deployed behind an API.

The model may be remote (for example `ChatOpenAI` pointed at a vLLM server),
so we never see its tokens: `prompt_ids`, `token_ids` and `logprobs` are None
and the store records them as missing. We do not re-tokenize the text to fill
them in: a local tokenizer may differ from the server's, and a wrong token
record is worse than none (training skips such steps rather than learn from
guesses).

A batch goes through `.batch()`, which runs the calls concurrently. Sampling
settings are forwarded per call with the OpenAI-style names `temperature`,
`top_p`, `max_tokens` and `seed`, which ChatOpenAI-like models accept;
`top_k` is not part of that API and is left to the server's configuration.
Models that reject these keywords can be wrapped with `forward_sampling=False`,
and then the chat model's own settings apply.

A chat model cannot be spelled on a command line, so the backend's `model`
is an import spec `package.module:attribute` naming a `BaseChatModel`
instance, or a callable with no arguments that returns one (e.g. a factory
that builds `ChatOpenAI` pointed at a vLLM server). Code that already holds a
chat model passes it as `chat_model=` instead.

This backend cannot score continuations, so the scored action mode refuses it.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Sequence
from typing import Any

from agent.policy import Completion, Conversation, PolicyError, SamplingParams


def load_chat_model(spec: str) -> Any:
    """Import `package.module:attribute` and return the LangChain chat model it names (or builds)."""
    from langchain_core.language_models import BaseChatModel

    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise PolicyError(f"the langchain backend needs a model spec package.module:attribute, got {spec!r}")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise PolicyError(f"cannot import the chat model {spec!r}: {exc}") from None
    try:
        model = target() if callable(target) and not isinstance(target, BaseChatModel) else target
    except Exception as exc:  # a user's factory may raise anything; name it in one line
        first = (str(exc).strip().splitlines() or [""])[0]
        raise PolicyError(f"building the chat model {spec!r} failed: {type(exc).__name__}: {first}") from None
    if not isinstance(model, BaseChatModel):
        raise PolicyError(f"{spec!r} is a {type(model).__name__}, not a langchain_core BaseChatModel")
    return model


class LangChainPolicy:
    """Wrap a `langchain_core` BaseChatModel as a Policy (no token ids, no log-probs)."""

    tokenizer = None
    can_score = False

    def __init__(
        self,
        model: str | None = None,
        *,
        chat_model: Any = None,
        name: str | None = None,
        forward_sampling: bool = True,
    ) -> None:
        from langchain_core.language_models import BaseChatModel

        if chat_model is None:
            if model is None:
                raise PolicyError(
                    "the langchain backend needs a chat model: --model package.module:attribute "
                    "(or chat_model= in code)"
                )
            chat_model = load_chat_model(str(model))
        if not isinstance(chat_model, BaseChatModel):
            raise PolicyError(
                f"chat_model must be a langchain_core BaseChatModel, got {type(chat_model).__name__}"
            )
        self.chat_model = chat_model
        self.forward_sampling = forward_sampling
        self.name = name or f"langchain:{model or type(chat_model).__name__}"

    def _call_kwargs(self, params: SamplingParams) -> dict[str, Any]:
        if not self.forward_sampling:
            return {}
        kwargs: dict[str, Any] = {
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
        }
        if params.seed is not None:
            kwargs["seed"] = params.seed
        return kwargs

    def generate(self, conversations: Sequence[Conversation], params: SamplingParams) -> list[Completion]:
        """One `.batch()` call over all conversations; token ids and log-probs are recorded as missing."""
        from langchain_core.messages import convert_to_messages

        if not conversations:
            return []
        inputs = [convert_to_messages(conversation) for conversation in conversations]
        model = self.chat_model.bind(**self._call_kwargs(params))
        start = time.perf_counter()
        replies = model.batch(inputs)
        latency = time.perf_counter() - start
        return [
            Completion(
                text=reply.text,
                token_ids=None,
                logprobs=None,
                prompt_ids=None,
                finish_reason=(reply.response_metadata or {}).get("finish_reason"),
                latency_s=latency,
            )
            for reply in replies
        ]
