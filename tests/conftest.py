"""Shared test settings and model fixtures: few tokenizer threads, the real SmolLM2, tiny random Llamas.

The real model is converted into the shared cache (`$OEL_CACHE_DIR` or
~/.cache/oel) on the first run of any session (~30 s) and reused afterwards;
the tiny models (`tiny_models.py`: SmolLM2's tokenizer, 2 layers of width
128) live in a per-session temp folder. Agent and distill tests both use them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def smollm_path() -> Path:
    from agent.model import default_model_path

    return default_model_path()


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory, smollm_path) -> Path:
    from tiny_models import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-a", smollm_path, seed=0)


@pytest.fixture(scope="session")
def tiny_path_b(tmp_path_factory, smollm_path) -> Path:
    from tiny_models import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-b", smollm_path, seed=1)
